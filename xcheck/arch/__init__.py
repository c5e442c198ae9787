"""The model: a pure-Python VMSAv8-64 AT walker (Arm ARM DDI 0487, chapter D8).

No I/O and no emulator here: every function takes register values and a
read-only physical memory and returns values.
"""
