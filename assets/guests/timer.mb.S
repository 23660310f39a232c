/*
 * timer: a multiboot guest that does what a hobby kernel's first timer does: it remaps the PIC to
 * vectors 0x20-0x2f, programs PIT channel 0 at 100 Hz, installs an IRQ 0 handler in its IDT and
 * waits for ten ticks with `sti; hlt`. With `--irqchip` (KVM's in-kernel PIC and PIT) it prints
 * "timer ok: 10 ticks" and exits through isa-debug-exit with 0x21 (status 67). Without an interrupt
 * controller nothing wakes the first `hlt`, and the run ends there.
 */
    .code32
    .section .multiboot, "a"
    .align 4
    .long 0x1badb002
    .long 0x00000003
    .long -(0x1badb002 + 0x00000003)

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    /* IDT entry 0x20: a 32-bit interrupt gate to tick on kvmscope's 32-bit code selector 0x10. */
    mov $tick, %eax
    mov $idt + 0x20 * 8, %edi
    mov %ax, (%edi)
    movw $0x10, 2(%edi)
    movw $0x8e00, 4(%edi)
    shr $16, %eax
    mov %ax, 6(%edi)
    lidt idt_ptr

    /* The PIC: ICW1 (edge, cascade, ICW4), ICW2 vectors 0x20/0x28, ICW3 wiring, ICW4 8086 mode. */
    mov $0x11, %al
    out %al, $0x20
    out %al, $0xa0
    mov $0x20, %al
    out %al, $0x21
    mov $0x28, %al
    out %al, $0xa1
    mov $0x04, %al
    out %al, $0x21
    mov $0x02, %al
    out %al, $0xa1
    mov $0x01, %al
    out %al, $0x21
    out %al, $0xa1
    mov $0xfe, %al                  /* only IRQ 0 */
    out %al, $0x21
    mov $0xff, %al
    out %al, $0xa1

    /* The PIT: channel 0, low then high byte, mode 2 (rate generator), 1193182 Hz / 11932 = 100 Hz. */
    mov $0x34, %al
    out %al, $0x43
    mov $(11932 & 0xff), %al
    out %al, $0x40
    mov $(11932 >> 8), %al
    out %al, $0x40

    sti
1:  hlt
    cmpl $10, ticks
    jb 1b
    cli

    mov $msg, %esi
    call puts
    mov ticks, %eax
    call putdec
    mov $msg_end, %esi
    call puts
    mov $0x21, %eax
    out %eax, $0xf4
    hlt

tick:
    push %eax
    incl ticks
    mov $0x20, %al                  /* end of interrupt */
    out %al, $0x20
    pop %eax
    iret

#include "serial32.inc"

    .section .rodata
msg:
    .asciz "timer ok: "
msg_end:
    .asciz " ticks\n"

    .data
    .align 8
idt_ptr:
    .word 0x30 * 8 - 1
    .long idt
ticks:
    .long 0

    .bss
    .align 16
idt:
    .skip 0x30 * 8
    .skip 4096
stack_top:
