/*
 * stacks: a multiboot guest in C with frame pointers and known call paths, for the exit profile's
 * call stacks. Each `out` to the POST port 0x80 is an exit made on a path the test knows:
 *
 *   _start -> guest_main -> outer_a -> inner   3 exits
 *   _start -> guest_main -> outer_b -> inner   2 exits
 *   _start -> guest_main -> outer_b            1 exit
 *   _start -> guest_main                       1 exit (to isa-debug-exit: 0x51, status 163)
 */
#include <stdint.h>

__asm__(".pushsection .multiboot, \"a\"\n"
        ".align 4\n"
        ".long 0x1badb002\n"
        ".long 0x00000003\n"
        ".long -(0x1badb002 + 0x00000003)\n"
        ".popsection\n"
        ".pushsection .text\n"
        ".globl _start\n"
        "_start:\n"
        "  mov $stack_top, %esp\n"
        "  xor %ebp, %ebp\n"
        "  call guest_main\n"
        "1: hlt\n"
        "  jmp 1b\n"
        ".popsection\n"
        ".pushsection .bss\n"
        ".align 16\n"
        "  .skip 8192\n"
        "stack_top:\n"
        ".popsection\n");

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }

__attribute__((noinline)) void inner(int n) {
    for (int i = 0; i < n; i++)
        outb(0x80, (uint8_t)i);
}

__attribute__((noinline)) void outer_a(void) { inner(3); }

__attribute__((noinline)) void outer_b(void) {
    inner(2);
    outb(0x80, 0xb);
}

void guest_main(void) {
    outer_a();
    outer_b();
    __asm__ volatile("outl %0, %1" : : "a"(0x51u), "Nd"((uint16_t)0xf4));
}
