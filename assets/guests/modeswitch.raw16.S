/*
 * modeswitch: a raw real-mode image (`--load 0x7c00 --entry 0x7c00 --mode real`) that makes a port
 * exit in real mode, switches to 32-bit protected mode without any exit in between, and makes the
 * same kind of exit there: `out %ax, %dx` is `ef` in 16-bit code and `66 ef` in 32-bit code, so the
 * decoded instruction shows whether kvmscope noticed the mode change. Exits with 0 (status 1).
 */
    .code16
    .text
    .globl _start
_start:
    xor %ax, %ax
    mov %ax, %ds
    mov $0x80, %dx
    out %ax, %dx                /* 16-bit: ef */
    cli
    lgdtl gdt_desc
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $protected

    .code32
protected:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %ss
    mov $0x80, %dx
    out %ax, %dx                /* 32-bit: 66 ef */
    xor %eax, %eax
    out %eax, $0xf4
    hlt

    .align 8
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff    /* 0x08: 32-bit code, flat */
    .quad 0x00cf92000000ffff    /* 0x10: data, flat */
gdt_desc:
    .word gdt_desc - gdt - 1
    .long gdt
