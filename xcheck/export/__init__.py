"""Standalone tests from scenarios (`xcheck export`): what the Arm ARM
permits for each probe (answers.py) in a form that runs without xcheck
(qemu_tcg.py: a bare-metal test for QEMU)."""
