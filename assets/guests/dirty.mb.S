/*
 * dirty: a multiboot guest that writes, forever, one word in each of the 16 pages at 4 MiB
 * (0x400000-0x40ffff), and nothing else: the pages `--dirty-log` must find dirty, every interval.
 * It makes no exits; the run ends by --timeout.
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
    xor %eax, %eax
1:  mov $0x400000, %edi
2:  mov %eax, (%edi)
    add $0x1000, %edi
    cmp $0x410000, %edi
    jne 2b
    inc %eax
    jmp 1b
