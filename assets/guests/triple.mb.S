/*
 * triple: a multiboot guest that triple-faults. It loads an empty IDT and executes ud2: #UD cannot be
 * delivered, nor the #GP and #DF that follow, so the CPU shuts down (KVM_EXIT_SHUTDOWN).
 * Before that it writes one POST code, so the crash report has an exit to show.
 */
    .code32
    .section .multiboot, "a"
    .align 4
    .long 0x1badb002, 0, -0x1badb002

    .text
    .globl _start
_start:
    mov $0x42, %al
    out %al, $0x80
    lidt empty_idt
    ud2

    .section .rodata
    .align 8
empty_idt:
    .word 0
    .long 0
