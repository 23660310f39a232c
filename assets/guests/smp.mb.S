/*
 * smp: a multiboot guest that starts its other CPUs as a PC's firmware and kernels do, then keeps
 * every CPU busy. The boot CPU reads the CPU count from CMOS 0x5f (CPUs - 1, QEMU's convention),
 * copies a real-mode trampoline to 0x8000 and sends INIT and two STARTUP IPIs to all other CPUs
 * through its local APIC (so it needs --irqchip: KVM's in-kernel APIC). Each other CPU goes from
 * real mode to flat 32-bit protected mode and counts itself in `started`; once all have, the boot
 * CPU prints "smp: N of M cpus running" on the serial port, and from then on every CPU writes to the
 * POST port 0x80 forever, one exit per write. For the scaling bench: exits per second with 1 and 2
 * vCPUs. If a CPU does not come up within 20 million polls, N says how many did, and those spin.
 */
    .code32
    .section .multiboot, "a"
    .align 4
    .long 0x1badb002, 0, -0x1badb002

    .set TRAMPOLINE, 0x8000
    .set LAPIC_ICR_LOW, 0xfee00300
    .set LAPIC_ICR_HIGH, 0xfee00310
    /* ICR: destination "all excluding self" (bits 18-19), level assert, delivery mode INIT / STARTUP. */
    .set IPI_INIT, 0x000c4500
    .set IPI_STARTUP, 0x000c4600 | (TRAMPOLINE >> 12)

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    mov $0x5f, %al                  /* CMOS: CPUs - 1 */
    out %al, $0x70
    in $0x71, %al
    movzbl %al, %ebx
    test %ebx, %ebx
    jz report                       /* one CPU: nothing to start */

    /* The trampoline runs at 0x8000 in real mode: copy it there. */
    mov $ap_start, %esi
    mov $TRAMPOLINE, %edi
    mov $(ap_end - ap_start), %ecx
    rep movsb

    movl $0, LAPIC_ICR_HIGH
    movl $IPI_INIT, LAPIC_ICR_LOW
    movl $IPI_STARTUP, LAPIC_ICR_LOW
    movl $IPI_STARTUP, LAPIC_ICR_LOW

    mov $20000000, %ecx
1:  cmp started, %ebx
    je report
    pause
    dec %ecx
    jnz 1b

report:
    mov $msg_smp, %esi
    call puts
    mov started, %eax
    inc %eax
    call putdec
    mov $msg_of, %esi
    call puts
    lea 1(%ebx), %eax
    call putdec
    mov $msg_cpus, %esi
    call puts

/* Every CPU ends here: one exit per write, forever. */
spin:
    xor %eax, %eax
1:  out %al, $0x80
    inc %eax
    jmp 1b

/* ap_main: an AP in flat 32-bit protected mode, from the trampoline. */
ap_main:
    mov $0x18, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    lock incl started
    jmp spin

#include "serial32.inc"

/* The trampoline, copied to TRAMPOLINE: real mode at CS:IP = 0x800:0, so its own offsets are from
   ap_start; it loads its GDT, turns on protection and jumps to ap_main. */
    .code16
ap_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    lgdtl TRAMPOLINE + (ap_gdt_ptr - ap_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x10, $ap_main
    .align 8
ap_gdt:
    .quad 0
    .quad 0
    .quad 0x00cf9a000000ffff        /* 0x10: flat 32-bit code */
    .quad 0x00cf92000000ffff        /* 0x18: flat data */
ap_gdt_ptr:
    .word ap_gdt_ptr - ap_gdt - 1
    .long TRAMPOLINE + (ap_gdt - ap_start)
ap_end:
    .code32

    .section .rodata
msg_smp: .asciz "smp: "
msg_of: .asciz " of "
msg_cpus: .asciz " cpus running\n"

    .data
    .align 4
started: .long 0

    .bss
    .align 16
    .space 4096
stack_top:
