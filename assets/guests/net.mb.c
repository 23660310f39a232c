/*
 * net: a multiboot guest with a minimal virtio-net driver (virtio 1.x over MMIO, split rings,
 * polled: no interrupt controller) that answers ARP requests and ICMP echo (ping) for its address.
 * It finds kvmscope's net device in the fixed layout (0xd0000000 + i * 0x1000; or QEMU microvm's,
 * for the benchmark), negotiates MAC and STATUS only (plain frames, no offloads), posts 16 receive
 * buffers, prints "net: up <mac> <ip>" on the serial port, then serves frames forever.
 * Command-line words:
 *
 *   ip=A.B.C.D        its IPv4 address (default 10.0.2.15)
 *   replies=N         exit through isa-debug-exit with 0x35 (status 107) after N echo replies
 *   burst=N           first transmit N UDP frames to the broadcast address, port 9
 *   pingpong=N        first ask for peer's MAC (ARP), then send it N echo requests one at a time,
 *                     each after the last one's reply, timed with the TSC: print
 *                     "net-bench round-trips N cycles HEX" and exit with 0x36 (status 109)
 *   peer=A.B.C.D      the address pingpong pings (default 10.0.2.2)
 *
 * A failed check N exits with N (status 2N+1).
 *
 * Run with: --net tap=tap0
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

#define ID_NET 1
#define F_MAC (1u << 5)
#define F_STATUS (1u << 16)
#define F_VERSION_1_HIGH 1u

#define F_NEXT 1
#define F_WRITE 2

#define QSZ 16
#define HDR 12          /* struct virtio_net_hdr_v1 */
#define BUF 1536        /* a header and a full Ethernet frame */

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

static struct vq rxq, txq;
static u8 rx_buf[QSZ][BUF] __attribute__((aligned(16)));
static u8 tx_buf[BUF] __attribute__((aligned(16)));
static u8 mac[6];
static u32 my_ip = (10u << 24) | (0u << 16) | (2u << 8) | 15u;

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
static void putdec(u32 v) {
    char b[12];
    int i = 0;
    do {
        b[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i--)
        putc(b[i]);
}
static void puthex8(u8 v) {
    putc("0123456789abcdef"[v >> 4]);
    putc("0123456789abcdef"[v & 15]);
}
static void __attribute__((noreturn)) exit_with(u32 v) {
    outl(0xf4, v);
    for (;;)
        __asm__ volatile("hlt");
}
static void check(int ok, u32 n, const char *what) {
    if (ok)
        return;
    puts("net: check failed: ");
    puts(what);
    putc('\n');
    exit_with(n);
}
static void copy(void *d, const void *s, u32 n) {
    u8 *a = d;
    const u8 *b = s;
    while (n--)
        *a++ = *b++;
}
static void *memset(void *d, int c, u32 n) {
    u8 *p = d;
    while (n--)
        *p++ = (u8)c;
    return d;
}
static int same(const void *x, const void *y, u32 n) {
    const u8 *a = x, *b = y;
    while (n--)
        if (*a++ != *b++)
            return 0;
    return 1;
}

/* The number after `key=` on the command line (a word of its own), or `dflt`; a dotted IPv4
 * address reads as its 32 bits. */
static u32 arg(const char *s, const char *key, u32 dflt) {
    for (const char *w = s; w && *w; w++) {
        if (w != s && w[-1] != ' ')
            continue;
        const char *a = w, *k = key;
        while (*k && *a == *k)
            a++, k++;
        if (*k)
            continue;
        u32 v = 0, part = 0;
        for (; (*a >= '0' && *a <= '9') || *a == '.'; a++) {
            if (*a == '.') {
                v = (v << 8) | part;
                part = 0;
            } else {
                part = part * 10 + (u32)(*a - '0');
            }
        }
        return (v << 8) | part;
    }
    return dflt;
}

static inline u32 rd(u32 base, u32 reg) { return *(volatile u32 *)(base + reg); }
static inline void wr(u32 base, u32 reg, u32 v) { *(volatile u32 *)(base + reg) = v; }

static int is_net(u32 base) {
    return rd(base, R_MAGIC) == 0x74726976 && rd(base, R_VERSION) == 2 && rd(base, R_DEVICE_ID) == ID_NET;
}

static u32 find_net(void) {
    for (u32 i = 0; i < SLOTS; i++)
        if (is_net(MMIO_BASE + i * MMIO_STRIDE))
            return MMIO_BASE + i * MMIO_STRIDE;
    for (u32 i = 0; i < MICROVM_SLOTS; i++)
        if (is_net(MICROVM_BASE + i * MICROVM_STRIDE))
            return MICROVM_BASE + i * MICROVM_STRIDE;
    return 0;
}

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

/* Offers receive buffer `i` to the device. */
static void post_rx(u16 i) {
    rxq.desc[i].addr = (u32)rx_buf[i];
    rxq.desc[i].len = BUF;
    rxq.desc[i].flags = F_WRITE;
    rxq.avail.ring[rxq.avail.idx % QSZ] = i;
    barrier();
    rxq.avail.idx++;
}

/* Transmits `len` bytes of frame at tx_buf + HDR, and waits until the device has taken them. */
static void transmit(u32 len) {
    memset(tx_buf, 0, HDR);
    txq.desc[0].addr = (u32)tx_buf;
    txq.desc[0].len = HDR + len;
    txq.desc[0].flags = 0;
    txq.avail.ring[txq.avail.idx % QSZ] = 0;
    barrier();
    txq.avail.idx++;
    barrier();
    wr(txq.base, R_QUEUE_NOTIFY, 1);
    for (u32 spin = 0; spin < 0x10000000u; spin++) {
        if (*(volatile u16 *)&txq.used.idx != txq.last_used) {
            txq.last_used++;
            return;
        }
        __asm__ volatile("pause");
    }
    check(0, 20, "the device never took a transmitted frame");
}

static u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static u32 be32(const u8 *p) { return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3]; }
static void put16(u8 *p, u16 v) { p[0] = (u8)(v >> 8), p[1] = (u8)v; }
static void put32(u8 *p, u32 v) { p[0] = (u8)(v >> 24), p[1] = (u8)(v >> 16), p[2] = (u8)(v >> 8), p[3] = (u8)v; }

static u16 checksum(const u8 *p, u32 n) {
    u32 sum = 0;
    for (u32 i = 0; i + 1 < n; i += 2)
        sum += be16(p + i);
    if (n & 1)
        sum += (u32)p[n - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (u16)~sum;
}

/* Answers an ARP request for our address. */
static void arp(const u8 *f, u32 len) {
    if (len < 42 || be16(f + 20) != 1 || be32(f + 38) != my_ip)
        return;
    u8 *r = tx_buf + HDR;
    copy(r, f + 6, 6);
    copy(r + 6, mac, 6);
    put16(r + 12, 0x0806);
    copy(r + 14, f + 14, 6); /* hardware and protocol types and sizes */
    put16(r + 20, 2);
    copy(r + 22, mac, 6);
    put32(r + 28, my_ip);
    copy(r + 32, f + 22, 10); /* the asker's hardware and protocol addresses */
    memset(r + 42, 0, 18);
    transmit(60);
}

/* Answers an ICMP echo request to our address; 1 when it did. */
static int ping(const u8 *f, u32 len) {
    if (len < 42 || f[14] >> 4 != 4 || f[23] != 1 || be32(f + 30) != my_ip)
        return 0;
    u32 ihl = (u32)(f[14] & 15) * 4, total = be16(f + 16);
    if (total + 14 > len || total < ihl + 8 || f[14 + ihl] != 8)
        return 0;
    u8 *r = tx_buf + HDR;
    copy(r, f + 6, 6);
    copy(r + 6, mac, 6);
    copy(r + 12, f + 12, total + 2);
    copy(r + 30, f + 26, 4);
    put32(r + 26, my_ip);
    u8 *icmp = r + 14 + ihl;
    icmp[0] = 0;
    put16(icmp + 2, 0);
    put16(icmp + 2, checksum(icmp, total - ihl));
    transmit(total + 14 < 60 ? 60 : total + 14);
    return 1;
}

/* Broadcasts `n` UDP frames to port 9 (discard), for the benchmark. */
static void burst(u32 n) {
    u8 *f = tx_buf + HDR;
    memset(f, 0xff, 6);
    copy(f + 6, mac, 6);
    put16(f + 12, 0x0800);
    memset(f + 14, 0, 28);
    f[14] = 0x45;
    put16(f + 16, 28 + 18);
    f[22] = 64;
    f[23] = 17;
    put32(f + 26, my_ip);
    put32(f + 30, 0xffffffffu);
    put16(f + 24, checksum(f + 14, 20));
    put16(f + 34, 9);
    put16(f + 36, 9);
    put16(f + 38, 8 + 18);
    for (u32 i = 0; i < n; i++)
        transmit(64);
}

static u32 net_base;

/* Waits for the next received frame: its buffer's index; the frame (NULL if it is not for us,
 * by MAC or broadcast) and its length. */
static u16 next_frame(const u8 **frame, u32 *length) {
    while (*(volatile u16 *)&rxq.used.idx == rxq.last_used)
        __asm__ volatile("pause");
    struct used_elem e = rxq.used.ring[rxq.last_used % QSZ];
    rxq.last_used++;
    wr(net_base, R_INTERRUPT_ACK, rd(net_base, R_INTERRUPT_STATUS));
    u16 i = (u16)e.id;
    *frame = 0;
    if (i < QSZ && e.len > HDR + 14 && e.len <= BUF) {
        const u8 *f = rx_buf[i] + HDR;
        if (same(f, mac, 6) || (f[0] & f[1] & f[2] & f[3] & f[4] & f[5]) == 0xff) {
            *frame = f;
            *length = e.len - HDR;
        }
    }
    return i;
}

/* Gives receive buffer `i` back to the device. */
static void recycle(u16 i) {
    if (i < QSZ)
        post_rx(i);
    wr(net_base, R_QUEUE_NOTIFY, 0);
}

/* Answers ARP requests and echo requests for us; 1 when it sent an echo reply. */
static int answer(const u8 *f, u32 len) {
    if (be16(f + 12) == 0x0806) {
        arp(f, len);
        return 0;
    }
    return be16(f + 12) == 0x0800 && ping(f, len);
}

static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (u64)hi << 32 | lo;
}

/* The benchmark: peer's MAC by ARP, then `n` echo requests, each sent when the last is answered. */
static void __attribute__((noreturn)) pingpong(u32 n, u32 peer) {
    static u8 peer_mac[6];
    u8 *r = tx_buf + HDR;
    memset(r, 0xff, 6);
    copy(r + 6, mac, 6);
    put16(r + 12, 0x0806);
    put16(r + 14, 1);
    put16(r + 16, 0x0800);
    r[18] = 6;
    r[19] = 4;
    put16(r + 20, 1);
    copy(r + 22, mac, 6);
    put32(r + 28, my_ip);
    memset(r + 32, 0, 6);
    put32(r + 38, peer);
    memset(r + 42, 0, 18);
    transmit(60);
    for (int known = 0; !known;) {
        const u8 *f;
        u32 len;
        u16 i = next_frame(&f, &len);
        if (f && len >= 42 && be16(f + 12) == 0x0806 && be16(f + 20) == 2 && be32(f + 28) == peer) {
            copy(peer_mac, f + 22, 6);
            known = 1;
        } else if (f) {
            answer(f, len);
        }
        recycle(i);
    }
    u64 start = rdtsc();
    for (u32 seq = 1; seq <= n; seq++) {
        memset(r, 0, 98);
        copy(r, peer_mac, 6);
        copy(r + 6, mac, 6);
        put16(r + 12, 0x0800);
        r[14] = 0x45;
        put16(r + 16, 84);
        r[22] = 64;
        r[23] = 1;
        put32(r + 26, my_ip);
        put32(r + 30, peer);
        put16(r + 24, checksum(r + 14, 20));
        r[34] = 8;
        put16(r + 38, 0x6b76);
        put16(r + 40, (u16)seq);
        put16(r + 36, checksum(r + 34, 64));
        transmit(98);
        for (int replied = 0; !replied;) {
            const u8 *f;
            u32 len;
            u16 i = next_frame(&f, &len);
            if (f && len >= 42 && be16(f + 12) == 0x0800 && f[23] == 1 && f[34] == 0 && be16(f + 40) == (u16)seq)
                replied = 1;
            else if (f)
                answer(f, len);
            recycle(i);
        }
    }
    u64 cycles = rdtsc() - start;
    puts("net-bench round-trips ");
    putdec(n);
    puts(" cycles ");
    for (int s = 60; s >= 0; s -= 4)
        putc("0123456789abcdef"[(cycles >> s) & 15]);
    putc('\n');
    exit_with(0x36);
}

void guest_main(u32 magic, u32 *info) {
    const char *cmdline = (magic == 0x2badb002 && (info[0] & 4)) ? (const char *)info[4] : "";
    my_ip = arg(cmdline, "ip=", my_ip);
    u32 replies = arg(cmdline, "replies=", 0);
    u32 base = net_base = find_net();
    check(base != 0, 1, "no virtio-net device");
    wr(base, R_STATUS, 0);
    wr(base, R_STATUS, S_ACKNOWLEDGE | S_DRIVER);
    wr(base, R_DEVICE_FEATURES_SEL, 0);
    u32 offered = rd(base, R_DEVICE_FEATURES);
    check((offered & F_MAC) != 0, 2, "no MAC feature");
    wr(base, R_DRIVER_FEATURES_SEL, 0);
    wr(base, R_DRIVER_FEATURES, offered & (F_MAC | F_STATUS));
    wr(base, R_DRIVER_FEATURES_SEL, 1);
    wr(base, R_DRIVER_FEATURES, F_VERSION_1_HIGH);
    wr(base, R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK);
    check((rd(base, R_STATUS) & S_FEATURES_OK) != 0, 3, "FEATURES_OK refused");
    for (u32 i = 0; i < 6; i++)
        mac[i] = *(volatile u8 *)(base + R_CONFIG + i);
    check(setup_queue(base, &rxq, 0), 4, "receive queue refused");
    check(setup_queue(base, &txq, 1), 5, "transmit queue refused");
    wr(base, R_STATUS, S_ACKNOWLEDGE | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
    for (u16 i = 0; i < QSZ; i++)
        post_rx(i);
    wr(base, R_QUEUE_NOTIFY, 0);
    puts("net: up ");
    for (u32 i = 0; i < 6; i++) {
        puthex8(mac[i]);
        putc(i < 5 ? ':' : ' ');
    }
    for (int s = 24; s >= 0; s -= 8) {
        putdec((my_ip >> s) & 255);
        putc(s ? '.' : '\n');
    }
    u32 n = arg(cmdline, "burst=", 0);
    if (n) {
        burst(n);
        puts("net: burst sent\n");
    }
    u32 rounds = arg(cmdline, "pingpong=", 0);
    if (rounds)
        pingpong(rounds, arg(cmdline, "peer=", (10u << 24) | (2u << 8) | 2u));
    u32 answered = 0;
    for (;;) {
        const u8 *f;
        u32 len;
        u16 i = next_frame(&f, &len);
        if (f && answer(f, len)) {
            answered++;
            puts("net: echo reply ");
            putdec(answered);
            putc('\n');
            if (replies && answered >= replies)
                exit_with(0x35);
        }
        recycle(i);
    }
}
