"""The emulator side: QEMU driven over its GDB stub."""
