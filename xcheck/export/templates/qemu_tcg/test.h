/* Shared between the generated tables (expect.c, probes.S) and check.c. */
#ifndef XCHECK_TEST_H
#define XCHECK_TEST_H

#include <stdint.h>

/* One AT probe and where its permitted answers start in answers[]. */
struct probe {
    const char *label;
    uint32_t first_answer;
    uint32_t n_answers;
};

/* A result the Arm ARM permits. exception_el 0: a PAR_EL1 value, bits
 * outside mask are UNKNOWN or IMPLEMENTATION DEFINED and are not compared.
 * exception_el 1 or 2 (3: either): an exception to that EL whose ESR, in the
 * bits of mask, is par (UNDEFINED, trapped or aborted AT). */
struct answer {
    uint64_t par;
    uint64_t mask;
    uint32_t exception_el;
};

/* A nonzero 64-bit word of the memory image (translation tables). */
struct word {
    uint64_t addr;
    uint64_t value;
};

/* ID register fields the expectations depend on, for one exported CPU. */
struct cpu {
    const char *name;
    uint64_t mmfr0, mmfr1, mmfr2, pfr0;
};

/* An exception the probes did not expect: flags bit 0 = taken,
 * [15:8] the EL it was taken to, [23:16] the vector slot. */
struct exc_record {
    uint64_t flags, esr, elr, far;
};

extern const char test_name[];
extern const struct probe probes[];
extern const uint32_t n_probes;
extern const struct answer answers[];
extern const struct word image[];
extern const uint32_t n_image;
extern const struct cpu cpus[];
extern const uint32_t n_cpus;
extern const uint64_t id_masks[4];

/* probes.S: runs every probe, one PAR per probe into pars[], exceptions
 * into records[] (records[n_probes] for the setup code). */
void run_probes(uint64_t *pars, struct exc_record *records);

#endif
