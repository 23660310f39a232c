/*
 * debugcon: a raw real-mode image (`--load 0x7c00 --entry 0x7c00 --mode real`) that logs the way
 * SeaBIOS and hobby kernels do: "qemu debugcon\n" to port 0x402 and "bochs e9\n" to port 0xe9, after
 * checking that port 0xe9 reads back as 0xe9. Exits with 0 (status 1) when it did, 1 (status 3) when
 * the port was not there.
 */
    .code16
    .text
    .globl _start
_start:
    xor %ax, %ax
    mov %ax, %ds
    in $0xe9, %al
    cmp $0xe9, %al
    jne absent
    mov $0x402, %dx
    mov $qemu, %si
    call puts
    mov $0xe9, %dx
    mov $bochs, %si
    call puts
    xor %al, %al
    out %al, $0xf4
    hlt
absent:
    mov $1, %al
    out %al, $0xf4
    hlt

/* puts: the NUL-terminated string at %si to port %dx. */
puts:
    lodsb
    test %al, %al
    jz 1f
    out %al, %dx
    jmp puts
1:  ret

qemu:
    .asciz "qemu debugcon\n"
bochs:
    .asciz "bochs e9\n"
