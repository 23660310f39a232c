/*
 * real: a raw real-mode image, for `--image real.bin --load 0x7c00 --entry 0x7c00 --mode real`.
 * Prints "real\n" with plain `out`s and exits through isa-debug-exit with 5 (status 11).
 */
    .code16
    .text
    .globl _start
_start:
    mov $0x3f8, %dx
    mov $'r', %al
    out %al, %dx
    mov $'e', %al
    out %al, %dx
    mov $'a', %al
    out %al, %dx
    mov $'l', %al
    out %al, %dx
    mov $'\n', %al
    out %al, %dx
    mov $5, %al
    out %al, $0xf4
    hlt
