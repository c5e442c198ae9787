/*
 * Copy the memory image, check the CPU, run the probes, compare each PAR_EL1
 * with the answers the Arm ARM permits and print one line per probe on the
 * PL011 UART. Returns 0 when every probe passes, 1 when one fails, 2 when
 * the test cannot run here (not at EL2, or a CPU the answers were not
 * computed for).
 */
#include "test.h"

#define UART_DR ((volatile uint32_t *)0x09000000)
#define UART_FR ((volatile uint32_t *)0x09000018)
#define UART_FR_TXFF (1u << 5)

static uint64_t pars[4096 + 1];
static struct exc_record records[4096 + 1];

static void putc_uart(char c)
{
    while (*UART_FR & UART_FR_TXFF) {
    }
    *UART_DR = (uint32_t)c;
}

static void puts_uart(const char *s)
{
    while (*s) {
        if (*s == '\n') {
            putc_uart('\r');
        }
        putc_uart(*s++);
    }
}

static void put_hex(uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        putc_uart("0123456789abcdef"[(v >> (4 * i)) & 0xf]);
    }
}

static void put_dec(uint64_t v)
{
    char buf[21];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) {
        putc_uart(buf[--n]);
    }
}

static void put_bin(uint64_t v, int bits)
{
    puts_uart("0b");
    for (int i = bits - 1; i >= 0; i--) {
        putc_uart((v >> i) & 1 ? '1' : '0');
    }
}

static uint64_t field(uint64_t v, int lsb, int width)
{
    return (v >> lsb) & ((1ull << width) - 1);
}

/* PAR_EL1 decoded (Arm ARM D24.2 PAR_EL1): F == 1 gives FST, S, PTW;
 * F == 0 gives PA, ATTR, SH, NS. */
static void put_par(uint64_t par)
{
    puts_uart("0x");
    put_hex(par, 16);
    if (par & 1) {
        puts_uart(" (fault FST=");
        put_bin(field(par, 1, 6), 6);
        puts_uart(" S=");
        put_dec(field(par, 9, 1));
        puts_uart(" PTW=");
        put_dec(field(par, 8, 1));
    } else {
        puts_uart(" (PA=0x");
        put_hex(field(par, 12, 44) << 12, 14);
        puts_uart(" ATTR=0x");
        put_hex(field(par, 56, 8), 2);
        puts_uart(" SH=");
        put_bin(field(par, 7, 2), 2);
        puts_uart(" NS=");
        put_dec(field(par, 9, 1));
    }
    puts_uart(")");
}

struct par_field {
    const char *name;
    int lsb, width;
};

static const struct par_field success_fields[] = {
    {"ATTR", 56, 8}, {"PA", 12, 44}, {"NS", 9, 1}, {"SH", 7, 2}, {"F", 0, 1}, {0, 0, 0},
};
static const struct par_field fault_fields[] = {
    {"S", 9, 1}, {"PTW", 8, 1}, {"FST", 1, 6}, {"F", 0, 1}, {0, 0, 0},
};

/* The names of the fields where got and want differ in the compared bits. */
static void put_differing(uint64_t got, const struct answer *want)
{
    uint64_t diff = (got ^ want->par) & want->mask;
    const struct par_field *f = (want->par & 1) ? fault_fields : success_fields;
    if (diff & 1) {
        puts_uart(" F");
        return;
    }
    for (; f->name; f++) {
        if (field(diff, f->lsb, f->width)) {
            putc_uart(' ');
            puts_uart(f->name);
        }
    }
    uint64_t named = (want->par & 1) ? 0x37full : ~0xc7eull;
    if (diff & ~named) {
        puts_uart(" reserved bits");
    }
}

/* Does the probe's result (its PAR, or the exception it took) match one of
 * its permitted answers? */
static int passes(uint64_t par, const struct exc_record *r, const struct probe *p)
{
    uint64_t el = field(r->flags, 8, 8);
    for (uint32_t k = 0; k < p->n_answers; k++) {
        const struct answer *a = &answers[p->first_answer + k];
        if (!(r->flags & 1) && !a->exception_el && ((par ^ a->par) & a->mask) == 0) {
            return 1;
        }
        if ((r->flags & 1) && a->exception_el && (a->exception_el == 3 || a->exception_el == el)
            && ((r->esr ^ a->par) & a->mask) == 0) {
            return 1;
        }
    }
    return 0;
}

static void put_answer(const struct answer *a)
{
    if (!a->exception_el) {
        put_par(a->par);
        puts_uart(" mask 0x");
        put_hex(a->mask, 16);
        return;
    }
    puts_uart(a->exception_el == 3 ? "exception to any EL" : "exception to EL");
    if (a->exception_el != 3) {
        put_dec(a->exception_el);
    }
    puts_uart(" with ESR & 0x");
    put_hex(a->mask, 8);
    puts_uart(" == 0x");
    put_hex(a->par, 8);
    puts_uart(" (EC=0x");
    put_hex(field(a->par, 26, 6), 2);
    puts_uart(")");
}

static void put_exception(const struct exc_record *r)
{
    puts_uart("exception to EL");
    put_dec(field(r->flags, 8, 8));
    puts_uart(" ESR=0x");
    put_hex(r->esr, 8);
    puts_uart(" (EC=0x");
    put_hex(field(r->esr, 26, 6), 2);
    puts_uart(") ELR=0x");
    put_hex(r->elr, 16);
    puts_uart(" FAR=0x");
    put_hex(r->far, 16);
}

/* What a probe gave: the exception it took, or its PAR. */
static void put_result(uint64_t par, const struct exc_record *r)
{
    if (r->flags & 1) {
        put_exception(r);
    } else {
        puts_uart("PAR ");
        put_par(par);
    }
}

#define READ_ID(name) ({ uint64_t v_; __asm__ volatile("mrs %0, " #name : "=r"(v_)); v_; })

/* The CPU must be one the answers were computed for: the ID register
 * fields the model reads (masks in id_masks) equal one exported CPU's. */
static int cpu_matches(void)
{
    uint64_t id[4] = {
        READ_ID(id_aa64mmfr0_el1), READ_ID(id_aa64mmfr1_el1),
        READ_ID(id_aa64mmfr2_el1), READ_ID(id_aa64pfr0_el1),
    };
    static const char *const names[4] = {
        "ID_AA64MMFR0_EL1", "ID_AA64MMFR1_EL1", "ID_AA64MMFR2_EL1", "ID_AA64PFR0_EL1",
    };
    for (uint32_t c = 0; c < n_cpus; c++) {
        const uint64_t want[4] = {cpus[c].mmfr0, cpus[c].mmfr1, cpus[c].mmfr2, cpus[c].pfr0};
        int same = 1;
        for (int i = 0; i < 4; i++) {
            same &= ((id[i] ^ want[i]) & id_masks[i]) == 0;
        }
        if (same) {
            puts_uart("cpu: as exported for ");
            puts_uart(cpus[c].name);
            puts_uart("\n");
            return 1;
        }
    }
    puts_uart("CANNOT CHECK: the answers were computed for other CPU features:\n");
    for (int i = 0; i < 4; i++) {
        puts_uart("  ");
        puts_uart(names[i]);
        puts_uart(" = 0x");
        put_hex(id[i] & id_masks[i], 16);
        puts_uart(" (fields the model reads)\n");
    }
    for (uint32_t c = 0; c < n_cpus; c++) {
        const uint64_t want[4] = {cpus[c].mmfr0, cpus[c].mmfr1, cpus[c].mmfr2, cpus[c].pfr0};
        puts_uart("  exported for ");
        puts_uart(cpus[c].name);
        puts_uart(":");
        for (int i = 0; i < 4; i++) {
            puts_uart(" 0x");
            put_hex(want[i] & id_masks[i], 16);
        }
        puts_uart("\n");
    }
    return 0;
}

int main(void)
{
    uint64_t el;
    __asm__ volatile("mrs %0, CurrentEL" : "=r"(el));
    puts_uart("test ");
    puts_uart(test_name);
    puts_uart("\n");
    if (((el >> 2) & 3) != 2) {
        puts_uart("CANNOT CHECK: started at EL");
        put_dec((el >> 2) & 3);
        puts_uart(", not EL2: run with -machine virt,virtualization=on\n");
        return 2;
    }
    if (!cpu_matches()) {
        return 2;
    }
    for (uint32_t i = 0; i < n_image; i++) {
        *(volatile uint64_t *)image[i].addr = image[i].value;
    }
    __asm__ volatile("dsb sy" ::: "memory");
    for (uint32_t i = 0; i < n_probes; i++) {
        pars[i] = ~0ull;
    }
    run_probes(pars, records);

    uint32_t failed = 0, passed = 0;
    if (records[n_probes].flags & 1) {
        puts_uart("FAIL setup: ");
        put_exception(&records[n_probes]);
        puts_uart("\n");
        failed++;
    }
    for (uint32_t i = 0; i < n_probes; i++) {
        const struct probe *p = &probes[i];
        const struct answer *want = &answers[p->first_answer];
        const struct exc_record *r = &records[i];
        if (passes(pars[i], r, p)) {
            puts_uart("PASS ");
            puts_uart(p->label);
            puts_uart(": ");
            put_result(pars[i], r);
            puts_uart("\n");
            passed++;
            continue;
        }
        failed++;
        puts_uart("FAIL ");
        puts_uart(p->label);
        puts_uart(":\n    got  ");
        put_result(pars[i], r);
        for (uint32_t k = 0; k < p->n_answers; k++) {
            puts_uart(k ? "\n    or   " : "\n    want ");
            put_answer(&want[k]);
            if (!(r->flags & 1) && !want[k].exception_el) {
                puts_uart(", differs in");
                put_differing(pars[i], &want[k]);
            }
        }
        puts_uart("\n");
    }
    puts_uart(failed ? "RESULT: FAIL " : "RESULT: PASS ");
    put_dec(passed);
    puts_uart("/");
    put_dec(n_probes);
    puts_uart(" probes passed\n");
    return failed ? 1 : 0;
}
