/*
 * higherhalf: a multiboot guest that builds its own 4-level page tables, enters long mode, and runs
 * at 0xffff800000100000+ (the kernel's higher half, 2 MiB pages) and from a 4 KiB page mapped at
 * 0x400000000 (a page table of its own). From each place it writes a byte to port 0x511, so
 * kvmscope must walk the guest's page tables to decode the instructions. Exits with 0x21 (status 67).
 */
    .code32
    .section .multiboot, "a"
    .align 4
    .long 0x1badb002, 0, -0x1badb002

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    /* PML4[0] and PML4[256] -> pdpt_low; PML4[0] also reaches 16 GiB via pdpt_low[16] -> pd_4k. */
    mov $pdpt_low, %eax
    or $3, %eax
    mov %eax, pml4
    mov %eax, pml4 + 256 * 8
    mov $pd_low, %eax
    or $3, %eax
    mov %eax, pdpt_low
    /* pd_low: identity 2 MiB pages for the first 8 MiB. */
    mov $0x83, %eax
    mov $0, %ecx
1:  mov %eax, pd_low(,%ecx,8)
    add $0x200000, %eax
    inc %ecx
    cmp $4, %ecx
    jne 1b
    /* 0x400000000 (pdpt index 16) -> pd_4k[0] -> pt_4k[0] -> the page holding far_code. */
    mov $pd_4k, %eax
    or $3, %eax
    mov %eax, pdpt_low + 16 * 8
    mov $pt_4k, %eax
    or $3, %eax
    mov %eax, pd_4k
    mov $far_page, %eax
    or $3, %eax
    mov %eax, pt_4k

    mov $pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax                  /* PAE */
    mov %eax, %cr4
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax                 /* EFER.LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax            /* PG | PE */
    mov %eax, %cr0
    lgdt gdt_ptr
    ljmp $0x08, $long_entry

    .code64
long_entry:
    mov $0xffff8000, %ecx
    shl $32, %rcx
    mov $high_entry, %eax
    add %rcx, %rax
    jmp *%rax
high_entry:
    mov $0x511, %dx
    mov $'H', %al
    out %al, %dx                    /* decoded at 0xffff8000001xxxxx */
    mov $4, %eax                    /* 0x400000000 (gas cannot put 64-bit constants in ELF32) */
    shl $32, %rax
    call *%rax
    mov $0x21, %eax
    out %eax, $0xf4
    hlt

    .section .rodata
    .align 8
gdt:
    .quad 0
    .quad 0x00af9b000000ffff        /* 0x08: 64-bit code */
gdt_ptr:
    .word gdt_ptr - gdt - 1
    .long gdt

    .section .data
    .align 4096
far_page:
far_code:
    mov $0x511, %dx
    mov $'F', %al
    out %al, %dx                    /* decoded at 0x40000000x through a 4 KiB page */
    ret
    .align 4096

    .bss
    .align 4096
pml4:   .skip 4096
pdpt_low: .skip 4096
pd_low: .skip 4096
pd_4k:  .skip 4096
pt_4k:  .skip 4096
    .skip 4096
stack_top:
