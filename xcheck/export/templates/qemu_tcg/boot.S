/*
 * Boot code, exception vectors and semihosting exit.
 *
 * The CPU starts at EL2 with its MMU off (virt,virtualization=on without
 * EL3). _start sets the stack and VBAR_EL2 and calls main(); main's return
 * value is the exit status, passed to QEMU by the semihosting SYS_EXIT call.
 *
 * While probes.S runs: x20 PAR buffer, x21 probe index, x22/x23 exception
 * records (EL1/EL2 address), x24 where an HVC from EL1 returns to at EL2,
 * x25-x27 handler scratch (x27 = vector slot), x28 exception count, x29
 * where to give up after MAX_EXCEPTIONS.
 */
#define EC_HVC64 0x16
#define SLOT_LOWER_SYNC 8
#define MAX_EXCEPTIONS 64

    .macro vector_table handler
    .irp slot, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    .balign 0x80
    mov x27, #\slot
    b \handler
    .endr
    .endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global vectors_el2
vectors_el2:
    vector_table handler_el2
    .balign 0x800
    .global vectors_el1
vectors_el1:
    vector_table handler_el1

    .text
    .global _start
_start:
    adrp x0, stack_top
    add x0, x0, :lo12:stack_top
    mov sp, x0
    adr x0, vectors_el2
    msr vbar_el2, x0
    isb
    bl main
    /* SYS_EXIT (0x18) with ADP_Stopped_ApplicationExit and the status */
    adrp x1, exit_block
    add x1, x1, :lo12:exit_block
    mov x2, #0x26
    movk x2, #2, lsl #16
    str x2, [x1]
    str x0, [x1, #8]
    mov w0, #0x18
    hlt #0xf000
1:  wfi
    b 1b

/* Count an exception the probes did not expect, give up after
 * MAX_EXCEPTIONS, record it in the probe's slot of the records at \records
 * and resume after the instruction (ELR + 4). */
    .macro record_and_skip el, records, esr
    add x28, x28, #1
    cmp x28, #MAX_EXCEPTIONS
    b.hi 2f
    add x26, \records, x21, lsl #5
    str \esr, [x26, #8]
    mov x25, #(1 | \el << 8)
    add x25, x25, x27, lsl #16
    str x25, [x26]
    mrs x25, elr_el\el
    str x25, [x26, #16]
    mrs x25, far_el\el
    str x25, [x26, #24]
    mrs x25, elr_el\el
    add x25, x25, #4
    msr elr_el\el, x25
    eret
    .endm

/* At EL2 an HVC from EL1 ends an EL1 group of probes: continue at x24. */
handler_el2:
    mrs x25, esr_el2
    ubfx x26, x25, #26, #6
    cmp x26, #EC_HVC64
    b.ne 1f
    cmp x27, #SLOT_LOWER_SYNC
    b.eq 3f
1:  record_and_skip 2, x23, x25
2:  br x29
3:  br x24

handler_el1:
    mrs x25, esr_el1
    record_and_skip 1, x22, x25
2:  hvc #0

    .bss
    .balign 8
exit_block:
    .skip 16
