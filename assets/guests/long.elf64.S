/*
 * long: a 64-bit ELF guest without a multiboot header, entered by kvmscope in long mode on its own
 * GDT and identity map. It proves it runs 64-bit code, prints "long mode ok\n" with plain `out`s
 * (no status polling: one exit per byte), writes a 64-bit value to an unclaimed MMIO address above
 * 3 GiB through the identity map, and halts with interrupts off (kvmscope exits with status 0).
 */
    .code64
    .text
    .globl _start
_start:
    /* A 64-bit-only operation: would be two instructions (dec, mov) in 32-bit mode. */
    mov $0x123456789, %rax
    shr $32, %rax
    cmp $1, %rax
    jne fail

    lea msg(%rip), %rsi
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:
    mov $0x1122334455667788, %rax
    mov $0xd0001000, %rbx
    mov %rax, (%rbx)
    cli
    hlt

fail:
    mov $0x7f, %al
    out %al, $0xf4
    hlt

    .section .rodata
msg:
    .asciz "long mode ok\n"
