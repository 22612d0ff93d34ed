/* read_book.c: print the latest price of every symbol in an hftlab book.
 *
 *   cc -std=c11 -O2 -o read_book docs/examples/read_book.c    (add -lrt on glibc < 2.34)
 *   ./read_book hftlab_book
 *
 * One line per symbol: "SYMBOL PRICE SEQ" (the price to 2 decimals), or "SYMBOL - 0" when it
 * has no usable price. Exits 0, or 1 with one line on stderr. C11 and POSIX only, on a
 * little-endian machine. The layout and the rules: docs/roles.md, "The book, byte by byte". */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { LAYOUT_VERSION = 2, HEADER_SIZE = 104, RECORD_SIZE = 56, MAX_SYMBOLS = 64, MAX_NAME = 30 };
static const char MAGIC[8] = {'H', 'F', 'T', 'B', 'O', 'O', 'K', '1'};   /* no NUL */

static const char *name;

static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "read_book: book '%s': ", name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* The seqlock reader: copy words 1..6 of a record (symbol .. updates) into w[1..6].
 * 0 on a consistent copy, -1 if the record stayed in mid-write for a second or two. */
static int read_record(_Atomic uint64_t *rec, uint64_t w[7]) {
    struct timespec pause = {0, 20000};                /* 20 us */
    time_t give_up = time(NULL) + 2;                   /* in 1 to 2 s */
    for (int tries = 1;; tries++) {
        uint64_t v1 = atomic_load_explicit(&rec[0], memory_order_acquire);
        if (v1 % 2 == 0) {                             /* even: no write in progress */
            for (int k = 1; k < 7; k++)
                w[k] = atomic_load_explicit(&rec[k], memory_order_relaxed);
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&rec[0], memory_order_relaxed) == v1)
                return 0;                              /* no write began or ended meanwhile */
        }
        if (tries > 100) {                             /* spin a little, then let the writer run */
            if (time(NULL) >= give_up)
                return -1;
            nanosleep(&pause, NULL);
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: read_book BOOK_NAME\n");
        return 1;
    }
    name = argv[1];
    if (strlen(name) > MAX_NAME)
        return fail("a book name is at most %d characters", MAX_NAME);
    char path[MAX_NAME + 2];
    snprintf(path, sizeof path, "/%s", name);          /* a POSIX shared-memory object */
    int fd = shm_open(path, O_RDONLY, 0);
    if (fd < 0)
        return errno == ENOENT ? fail("no such book (is the orderbook running?)")
                               : fail("cannot open it: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        return fail("cannot stat it: %s", strerror(errno));
    if (st.st_size < HEADER_SIZE)
        return fail("not a book: %lld bytes, less than a header", (long long)st.st_size);
    unsigned char *base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED)
        return fail("cannot map it: %s", strerror(errno));

    /* The creator stores the magic last: once we see it, the rest of the header is there. */
    uint64_t magic = atomic_load_explicit((_Atomic uint64_t *)base, memory_order_acquire);
    if (memcmp(&magic, MAGIC, 8) != 0)
        return fail("not a book (no HFTBOOK1 magic; all zeros while its orderbook starts)");
    uint32_t h[4];                       /* layout_version, n_symbols, record_size, header_size */
    memcpy(h, base + 8, sizeof h);
    if (h[0] != LAYOUT_VERSION)
        return fail("layout version %u; this program reads version %d", h[0], LAYOUT_VERSION);
    if (h[2] != RECORD_SIZE || h[3] != HEADER_SIZE)
        return fail("not a book: record_size %u, header_size %u", h[2], h[3]);
    uint32_t n = h[1];
    if (n < 1 || n > MAX_SYMBOLS || st.st_size < HEADER_SIZE + (off_t)n * RECORD_SIZE)
        return fail("not a book: %u symbols in %lld bytes", n, (long long)st.st_size);

    uint64_t w[MAX_SYMBOLS][7];                        /* every record first, then print */
    for (uint32_t i = 0; i < n; i++)
        if (read_record((_Atomic uint64_t *)(base + HEADER_SIZE + i * RECORD_SIZE), w[i]) < 0)
            return fail("record %u stayed in mid-write for a second: its orderbook is stopped or died", i);
    for (uint32_t i = 0; i < n; i++) {
        char symbol[9] = {0};                          /* NUL-padded, and 8 characters have no NUL */
        double price;
        memcpy(symbol, &w[i][1], 8);
        memcpy(&price, &w[i][2], 8);
        uint64_t seq = w[i][3];
        if (seq == 0 || !(isfinite(price) && price > 0))
            printf("%s - 0\n", symbol);                /* no usable price */
        else
            printf("%s %.2f %llu\n", symbol, price, (unsigned long long)seq);
    }
    return 0;
}
