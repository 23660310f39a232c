/*
 * virtio: a multiboot guest with a minimal virtio-mmio driver (virtio 1.x, split rings, polled: no
 * interrupt controller). It finds kvmscope's devices in their fixed layout (0xd0000000 + i * 0x1000),
 * negotiates each, and checks them:
 *
 *   virtio-blk      GET_ID; writes 8 sectors at sector 2, FLUSHes, reads them back and compares; a read
 *                   beyond the disk must fail with IOERR
 *   virtio-rng      32 bytes of entropy, not all zero
 *   virtio-console  one line transmitted
 *
 * Success exits through isa-debug-exit with 0x31 (status 99); failed check N exits with N (status
 * 2N+1). Command-line words change what it does:
 *
 *   spin-after-flush  after the FLUSH completed, print "virtio: flushed" and spin (for a kill test)
 *   hostile           then break the rules a driver must keep, one by one, and check that the
 *                     device refuses each as the spec allows; success exits with 0x32 (status 101)
 *   bench             then time 20000 reads of 4 KiB with the TSC, print
 *                     "virtio-bench reads 20000 cycles HEX", and exit with 0x33 (status 103)
 *   rounds            then five rounds: fill sector 2 with the round's number N, write it, and
 *                     write N to the POST port 0x80; exit with 0x34 (status 105)
 *
 * Its disk: 1 MiB or more of zeros (truncate -s 1M disk.img).
 * Run with: --disk disk.img --virtio rng,console
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
        "  push %ebx\n"
        "  push %eax\n"
        "  call guest_main\n"
        "1: hlt\n"
        "  jmp 1b\n"
        ".popsection\n"
        ".pushsection .bss\n"
        ".align 16\n"
        "  .skip 16384\n"
        "stack_top:\n"
        ".popsection\n");

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#define MMIO_BASE 0xd0000000u
#define MMIO_STRIDE 0x1000u
#define SLOTS 8
/* QEMU's microvm machine puts its virtio-mmio transports here (the benchmark runs the guest there
 * too, with -global virtio-mmio.force-legacy=false). */
#define MICROVM_BASE 0xfeb00000u
#define MICROVM_STRIDE 0x200u
#define MICROVM_SLOTS 24

/* virtio-mmio registers (version 2). */
#define R_MAGIC 0x000
#define R_VERSION 0x004
#define R_DEVICE_ID 0x008
#define R_DEVICE_FEATURES 0x010
#define R_DEVICE_FEATURES_SEL 0x014
#define R_DRIVER_FEATURES 0x020
#define R_DRIVER_FEATURES_SEL 0x024
#define R_QUEUE_SEL 0x030
#define R_QUEUE_NUM_MAX 0x034
#define R_QUEUE_NUM 0x038
#define R_QUEUE_READY 0x044
#define R_QUEUE_NOTIFY 0x050
#define R_INTERRUPT_STATUS 0x060
#define R_INTERRUPT_ACK 0x064
#define R_STATUS 0x070
#define R_QUEUE_DESC_LOW 0x080
#define R_QUEUE_DESC_HIGH 0x084
#define R_QUEUE_DRIVER_LOW 0x090
#define R_QUEUE_DRIVER_HIGH 0x094
#define R_QUEUE_DEVICE_LOW 0x0a0
#define R_QUEUE_DEVICE_HIGH 0x0a4
#define R_CONFIG 0x100

#define S_ACKNOWLEDGE 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define S_NEEDS_RESET 64

#define ID_BLOCK 2
#define ID_CONSOLE 3
#define ID_RNG 4

#define F_NEXT 1
#define F_WRITE 2

#define QSZ 8

struct desc {
    u64 addr;
    u32 len;
    u16 flags;
    u16 next;
};
struct avail {
    u16 flags;
    u16 idx;
    u16 ring[QSZ];
    u16 used_event;
};
struct used_elem {
    u32 id;
    u32 len;
};
struct used {
    u16 flags;
    u16 idx;
    struct used_elem ring[QSZ];
    u16 avail_event;
};
struct vq {
    struct desc desc[QSZ] __attribute__((aligned(16)));
    struct avail avail __attribute__((aligned(2)));
    struct used used __attribute__((aligned(4)));
    u32 base;
    u16 index;
    u16 last_used;
};

static struct vq blk_q, rng_q, con_rx, con_tx;

/* ---- port I/O, the serial port, the exit ---- */

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) {
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

static void putc(char c) {
    while (!(inb(0x3fd) & 0x20)) {
    }
    outb(0x3f8, (u8)c);
}
static void puts(const char *s) {
    while (*s)
        putc(*s++);
}
static void puthex(u32 v) {
    puts("0x");
    for (int i = 28; i >= 0; i -= 4)
        putc("0123456789abcdef"[(v >> i) & 15]);
}
static void __attribute__((noreturn)) exit_with(u32 v) {
    outl(0xf4, v);
    for (;;)
        __asm__ volatile("hlt");
}
static void check(int ok, u32 n, const char *what) {
    if (ok)
        return;
    puts("virtio: check ");
    puthex(n);
    puts(" failed: ");
    puts(what);
    putc('\n');
    exit_with(n);
}

/* ---- memory ---- */

static void *memset(void *d, int c, u32 n) {
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}
static int memeq(const void *a, const void *b, u32 n) {
    const u8 *x = a, *y = b;
    while (n--)
        if (*x++ != *y++)
            return 0;
    return 1;
}
static int has_word(const char *s, const char *w) {
    for (; s && *s; s++) {
        const char *a = s, *b = w;
        while (*b && *a == *b)
            a++, b++;
        if (!*b && (*a == 0 || *a == ' '))
            return 1;
    }
    return 0;
}

/* ---- the transport ---- */

static inline u32 rd(u32 base, u32 reg) { return *(volatile u32 *)(base + reg); }
static inline void wr(u32 base, u32 reg, u32 v) { *(volatile u32 *)(base + reg) = v; }

static int is_device(u32 base, u32 id) {
    return rd(base, R_MAGIC) == 0x74726976 && rd(base, R_VERSION) == 2 && rd(base, R_DEVICE_ID) == id;
}

static u32 find(u32 id) {
    for (u32 i = 0; i < SLOTS; i++)
        if (is_device(MMIO_BASE + i * MMIO_STRIDE, id))
            return MMIO_BASE + i * MMIO_STRIDE;
    for (u32 i = 0; i < MICROVM_SLOTS; i++)
        if (is_device(MICROVM_BASE + i * MICROVM_STRIDE, id))
            return MICROVM_BASE + i * MICROVM_STRIDE;
    return 0;
}

/* Reset, acknowledge, accept VERSION_1 and the low features in `want`; 1 when FEATURES_OK held. */
static int negotiate(u32 base, u32 want_low, u32 want_high) {
    wr(base, R_STATUS, 0);
    wr(base, R_STATUS, S_ACKNOWLEDGE);
    wr(base, R_STATUS, S_ACKNOWLEDGE | S_DRIVER);
    wr(base, R_DEVICE_FEATURES_SEL, 0);
    u32 low = rd(base, R_DEVICE_FEATURES);
    wr(base, R_DEVICE_FEATURES_SEL, 1);
    u32 high = rd(base, R_DEVICE_FEATURES);
    wr(base, R_DRIVER_FEATURES_SEL, 0);
    wr(base, R_DRIVER_FEATURES, low & want_low);
    wr(base, R_DRIVER_FEATURES_SEL, 1);
    wr(base, R_DRIVER_FEATURES, high & want_high);
    wr(base, R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
    return (rd(base, R_STATUS) & S_FEATURES_OK) != 0;
}

/* Sets up queue `index` on `q`; 1 when the device took it. */
static int setup_queue(u32 base, struct vq *q, u16 index) {
    memset(q, 0, sizeof *q);
    q->base = base;
    q->index = index;
    wr(base, R_QUEUE_SEL, index);
    if (rd(base, R_QUEUE_READY) != 0 || rd(base, R_QUEUE_NUM_MAX) < QSZ)
        return 0;
    wr(base, R_QUEUE_NUM, QSZ);
    wr(base, R_QUEUE_DESC_LOW, (u32)q->desc);
    wr(base, R_QUEUE_DESC_HIGH, 0);
    wr(base, R_QUEUE_DRIVER_LOW, (u32)&q->avail);
    wr(base, R_QUEUE_DRIVER_HIGH, 0);
    wr(base, R_QUEUE_DEVICE_LOW, (u32)&q->used);
    wr(base, R_QUEUE_DEVICE_HIGH, 0);
    wr(base, R_QUEUE_READY, 1);
    return rd(base, R_QUEUE_READY) == 1;
}

static void driver_ok(u32 base) { wr(base, R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK); }

/* Makes the chain at descriptor 0 available, notifies, and polls the used ring. Returns the used
 * length, or -1 when the device did not answer. */
static int submit(struct vq *q) {
    q->avail.ring[q->avail.idx % QSZ] = 0;
    barrier();
    q->avail.idx++;
    barrier();
    wr(q->base, R_QUEUE_NOTIFY, q->index);
    for (u32 spin = 0; spin < 0x40000000u; spin++) {
        if (*(volatile u16 *)&q->used.idx != q->last_used) {
            u32 len = q->used.ring[q->last_used % QSZ].len;
            q->last_used++;
            wr(q->base, R_INTERRUPT_ACK, rd(q->base, R_INTERRUPT_STATUS));
            return (int)len;
        }
        __asm__ volatile("pause");
    }
    return -1;
}

static void set_desc(struct vq *q, u16 i, const void *addr, u32 len, u16 flags) {
    q->desc[i].addr = (u32)addr;
    q->desc[i].len = len;
    q->desc[i].flags = flags;
    q->desc[i].next = (u16)(i + 1);
}

/* ---- virtio-blk ---- */

struct blk_header {
    u32 type;
    u32 reserved;
    u64 sector;
};
static struct blk_header header;
static volatile u8 blk_status;
static u8 out_buf[4096], in_buf[4096], id_buf[20];

/* One request; its status byte (0 OK, 1 IOERR, 2 UNSUPP), or 0xff when the device did not answer. */
static u8 blk_request(u32 type, u64 sector, void *data, u32 len, int device_writes) {
    header.type = type;
    header.reserved = 0;
    header.sector = sector;
    blk_status = 0xee;
    set_desc(&blk_q, 0, &header, sizeof header, F_NEXT);
    u16 next = 1;
    if (len) {
        set_desc(&blk_q, 1, data, len, F_NEXT | (device_writes ? F_WRITE : 0));
        next = 2;
    }
    set_desc(&blk_q, next, (const void *)&blk_status, 1, F_WRITE);
    if (submit(&blk_q) < 0)
        return 0xff;
    return blk_status;
}

static void fill_pattern(void) {
    static const char text[] = "kvmscope virtio-blk: written by the guest, sector ";
    for (u32 s = 0; s < 8; s++) {
        u8 *p = out_buf + s * 512;
        for (u32 i = 0; i < 512; i++)
            p[i] = (u8)(s * 31 + i);
        for (u32 i = 0; text[i]; i++)
            p[i] = (u8)text[i];
        p[sizeof text - 1] = (u8)('2' + s);
    }
}

static void test_blk(u32 base, const char *cmdline) {
    check(base != 0, 1, "no virtio-blk device");
    check(negotiate(base, 1u << 9 /* FLUSH */, 1 /* VERSION_1 */), 2, "blk: FEATURES_OK refused");
    check(setup_queue(base, &blk_q, 0), 3, "blk: queue 0 refused");
    driver_ok(base);
    u32 sectors = rd(base, R_CONFIG);
    check(sectors >= 16, 4, "blk: disk smaller than 16 sectors");
    check(blk_request(8 /* GET_ID */, 0, id_buf, sizeof id_buf, 1) == 0 && id_buf[0] != 0, 5, "blk: GET_ID");
    fill_pattern();
    check(blk_request(1 /* OUT */, 2, out_buf, sizeof out_buf, 0) == 0, 6, "blk: write");
    check(blk_request(4 /* FLUSH */, 0, 0, 0, 0) == 0, 7, "blk: flush");
    if (has_word(cmdline, "spin-after-flush")) {
        puts("virtio: flushed\n");
        for (;;)
            __asm__ volatile("pause");
    }
    memset(in_buf, 0, sizeof in_buf);
    check(blk_request(0 /* IN */, 2, in_buf, sizeof in_buf, 1) == 0, 8, "blk: read");
    check(memeq(in_buf, out_buf, sizeof in_buf), 9, "blk: read back differs from what was written");
    check(blk_request(0 /* IN */, sectors, in_buf, 512, 1) == 1, 10, "blk: read beyond the disk did not fail");
    puts("virtio-blk: wrote, flushed and read back 8 sectors\n");
}

/* ---- virtio-rng, virtio-console ---- */

static u8 entropy[32];

static void test_rng(u32 base) {
    check(base != 0, 11, "no virtio-rng device");
    check(negotiate(base, 0, 1), 12, "rng: FEATURES_OK refused");
    check(setup_queue(base, &rng_q, 0), 13, "rng: queue 0 refused");
    driver_ok(base);
    set_desc(&rng_q, 0, entropy, sizeof entropy, F_WRITE);
    check(submit(&rng_q) == sizeof entropy, 14, "rng: no entropy");
    u8 any = 0;
    for (u32 i = 0; i < sizeof entropy; i++)
        any |= entropy[i];
    check(any != 0, 15, "rng: 32 zero bytes");
    puts("virtio-rng: 32 bytes of entropy\n");
}

static const char hello[] = "virtio-console: hello from the guest\n";

static void test_console(u32 base) {
    check(base != 0, 16, "no virtio-console device");
    check(negotiate(base, 0, 1), 17, "console: FEATURES_OK refused");
    check(setup_queue(base, &con_rx, 0) && setup_queue(base, &con_tx, 1), 18, "console: queues refused");
    driver_ok(base);
    set_desc(&con_tx, 0, hello, sizeof hello - 1, 0);
    check(submit(&con_tx) == 0, 19, "console: transmit");
}

/* ---- a driver that breaks the rules ---- */

static int needs_reset(u32 base) {
    for (u32 i = 0; i < 100000; i++)
        if (rd(base, R_STATUS) & S_NEEDS_RESET)
            return 1;
    return 0;
}

static void hostile(u32 rng, u32 blk) {
    /* FEATURES_OK without VERSION_1 is refused. */
    check(!negotiate(rng, 0, 0), 20, "hostile: FEATURES_OK accepted without VERSION_1");
    /* A queue size that is not a power of two is refused; the queue cannot be made ready. */
    check(negotiate(rng, 0, 1), 21, "hostile: negotiation");
    wr(rng, R_QUEUE_SEL, 0);
    wr(rng, R_QUEUE_NUM, 3);
    wr(rng, R_QUEUE_READY, 1);
    check(rd(rng, R_QUEUE_READY) == 0, 22, "hostile: queue size 3 accepted");
    /* Rings in the MMIO hole are refused. */
    wr(rng, R_QUEUE_NUM, QSZ);
    wr(rng, R_QUEUE_DESC_LOW, 0xfee00000);
    wr(rng, R_QUEUE_READY, 1);
    check(rd(rng, R_QUEUE_READY) == 0, 23, "hostile: rings outside RAM accepted");
    /* A notification for a queue that is not ready is ignored. */
    wr(rng, R_QUEUE_NOTIFY, 0);
    wr(rng, R_QUEUE_NOTIFY, 7);
    /* A descriptor loop: the device gives up on the queue and asks for a reset. */
    check(negotiate(rng, 0, 1) && setup_queue(rng, &rng_q, 0), 24, "hostile: set-up");
    driver_ok(rng);
    rng_q.desc[0] = (struct desc){(u32)entropy, 8, F_WRITE | F_NEXT, 1};
    rng_q.desc[1] = (struct desc){(u32)entropy, 8, F_WRITE | F_NEXT, 0};
    rng_q.avail.ring[0] = 0;
    barrier();
    rng_q.avail.idx = 1;
    wr(rng, R_QUEUE_NOTIFY, 0);
    check(needs_reset(rng), 25, "hostile: descriptor loop not refused");
    /* A buffer in the MMIO hole, after a reset. */
    check(negotiate(rng, 0, 1) && setup_queue(rng, &rng_q, 0), 26, "hostile: set-up after reset");
    driver_ok(rng);
    rng_q.desc[0] = (struct desc){0xd0000000, 64, F_WRITE, 0};
    rng_q.avail.ring[0] = 0;
    barrier();
    rng_q.avail.idx = 1;
    wr(rng, R_QUEUE_NOTIFY, 0);
    check(needs_reset(rng), 27, "hostile: buffer outside RAM not refused");
    /* A read request whose data buffer the device may not write fails with IOERR; the disk lives on. */
    check(blk_request(0 /* IN */, 2, in_buf, 512, 0) == 1, 28, "hostile: read into a read-only buffer");
    check(blk_request(0 /* IN */, 2, in_buf, 512, 1) == 0, 29, "hostile: the disk did not survive");
    /* An avail index far beyond the queue: the device asks for a reset. */
    blk_q.avail.idx += 100;
    wr(blk, R_QUEUE_NOTIFY, 0);
    check(needs_reset(blk), 30, "hostile: avail index beyond the queue not refused");
    puts("virtio: every rule a driver broke was refused\n");
}

/* ---- a benchmark: 4 KiB reads, one at a time ---- */

#define BENCH_READS 20000

static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}

/* Five rounds: sector 2 filled with the round's number, written, then the number to the POST port
 * (an exit to stop at between rounds). */
static void rounds(void) {
    for (u32 n = 1; n <= 5; n++) {
        memset(out_buf, (int)n, 512);
        check(blk_request(1 /* OUT */, 2, out_buf, 512, 0) == 0, 50, "rounds: write");
        outb(0x80, (u8)n);
    }
    puts("virtio: five rounds written\n");
    exit_with(0x34);
}

static void bench(void) {
    u64 start = rdtsc();
    for (u32 i = 0; i < BENCH_READS; i++)
        check(blk_request(0 /* IN */, (i % 64) * 8, in_buf, sizeof in_buf, 1) == 0, 40, "bench: read");
    u64 cycles = rdtsc() - start;
    puts("virtio-bench reads 20000 cycles ");
    puthex((u32)(cycles >> 32));
    puthex((u32)cycles);
    putc('\n');
    exit_with(0x33);
}

void guest_main(u32 magic, u32 *info) {
    const char *cmdline = (magic == 0x2badb002 && (info[0] & 4)) ? (const char *)info[4] : "";
    test_blk(find(ID_BLOCK), cmdline);
    if (has_word(cmdline, "bench"))
        bench();
    if (has_word(cmdline, "rounds"))
        rounds();
    test_rng(find(ID_RNG));
    test_console(find(ID_CONSOLE));
    if (has_word(cmdline, "hostile")) {
        hostile(find(ID_RNG), find(ID_BLOCK));
        exit_with(0x32);
    }
    puts("virtio: all checks passed\n");
    exit_with(0x31);
}
