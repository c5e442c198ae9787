/*
 * xcheck-agent: the /init of a small arm64 Linux guest that runs jobs in nested
 * KVM virtual machines whose vCPU starts at (virtual) EL2.
 *
 * It mounts devtmpfs, proc and sysfs, puts the serial console in raw mode, maps
 * the shared memory of an ivshmem-plain device if QEMU offers one, prints a
 * banner (kernel release, KVM capabilities, shared memory size) and then serves
 * jobs forever on a line protocol (docs/kvm-target.md has the full grammar):
 *
 *   JOB <id> <vhe|nvhe>      open a job: fresh, zeroed guest RAM
 *   MEM <addr> <hex>         store bytes into guest RAM
 *   MEMS <addr> <len>        store the next <len> bytes of the shared memory
 *   REG x<n>|sp_el1 <value>  set a core register before the run
 *   ENTRY <pc>               where the vCPU starts (PSTATE = EL2h, DAIF masked)
 *   READ <addr> <len>        a RAM range to send back after the run
 *   QUEUE                    close the job unrun: it runs with the next RUN
 *   RUN <timeout_ms>         create the VM, run it (and the queued jobs' VMs, in
 *                            parallel, job k on CPU k), answer each job in order
 *
 * Answer:  RESULT <id> ok <stats> | RESULT <id> error <reason>
 *          OUT <offset> <value>  (stores the program made to the exit page)
 *          DATA <addr> <hex>     (the READ ranges)
 *          SDATA <addr> <len> <offset>  (a READ range, at <offset> in the shared memory)
 *          KLOG <level> <text>   (kernel warnings and worse logged meanwhile)
 *          END <id>
 * Outside a job: PING -> PONG; a line that is not a command -> ERROR <why>.
 * The jobs of one RUN (the queued ones and the last) are a group: their MEMS
 * blocks follow each other in the shared memory, so do their SDATA ranges, and
 * the KLOG lines logged while the group ran come with its first answer.
 *
 * The program ends by a store to EXIT_PA (+0: done, value = status) or reports
 * an exception by storing ESR/ELR/FAR/SPSR to EXIT_PA+0x10..0x28 and then the
 * vector offset to EXIT_PA+0x08. Both are outside guest RAM, so each store is a
 * KVM_EXIT_MMIO. Each VM's vCPU runs in its own thread, pinned to its CPU; the
 * main thread ends a run that does not finish in time (kvm_run.immediate_exit
 * and a signal to that thread). Every address and length from the host is checked.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <linux/kvm.h>

#ifndef KVM_ARM_VCPU_HAS_EL2
#define KVM_ARM_VCPU_HAS_EL2 7
#endif
#ifndef KVM_ARM_VCPU_HAS_EL2_E2H0
#define KVM_ARM_VCPU_HAS_EL2_E2H0 8
#endif
#ifndef KVM_CAP_ARM_EL2
#define KVM_CAP_ARM_EL2 240
#endif
#ifndef KVM_CAP_ARM_EL2_E2H0
#define KVM_CAP_ARM_EL2_E2H0 241
#endif

#define PROTOCOL_VERSION 3
#define RAM_BASE 0x40000000ULL
#define RAM_SIZE (128ULL << 20)
#define EXIT_PA 0x0f000000ULL /* one page: the program's exit and report window */
#define EXIT_SIZE 0x1000ULL
#define EXIT_DONE 0x00
#define EXIT_EXCEPTION 0x08
#define EXIT_ESR 0x10
#define EXIT_ELR 0x18
#define EXIT_FAR 0x20
#define EXIT_SPSR 0x28
#define GICD_PA 0x08000000ULL /* the virt machine's GICv3 layout */
#define GICR_PA 0x080a0000ULL
#define PSTATE_EL2H_MASKED 0x3c9ULL

#define MAX_LINE 16384
#define MAX_READS 16
#define MAX_GROUP 8 /* jobs run in parallel by one RUN */
#define STR_(x) #x
#define STR(x) STR_(x)
#define MAX_READ_TOTAL (4ULL << 20)
#define MAX_TIMEOUT_MS 600000UL
#define MAX_MMIO_EXITS 100000UL
#define DATA_CHUNK 1024
#define ERR_LEN 200

static int console_fd = -1;

/* ---- output: one buffer, flushed per answer ---------------------------- */

static char outbuf[1 << 16];
static size_t outlen;

static void out_flush(void)
{
	size_t off = 0;
	while (off < outlen) {
		ssize_t n = write(console_fd, outbuf + off, outlen - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	outlen = 0;
}

static void out_raw(const char *s, size_t n)
{
	while (n > 0) {
		size_t room = sizeof(outbuf) - outlen;
		size_t k = n < room ? n : room;
		memcpy(outbuf + outlen, s, k);
		outlen += k;
		s += k;
		n -= k;
		if (outlen == sizeof(outbuf))
			out_flush();
	}
}

__attribute__((format(printf, 1, 2))) static void out(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	out_raw(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void out_hex(const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char buf[2 * 256];
	while (n > 0) {
		size_t k = n < 256 ? n : 256;
		for (size_t i = 0; i < k; i++) {
			buf[2 * i] = digits[p[i] >> 4];
			buf[2 * i + 1] = digits[p[i] & 15];
		}
		out_raw(buf, 2 * k);
		p += k;
		n -= k;
	}
}

/* ---- shared memory: an ivshmem-plain PCI device whose BAR the host also maps --
 * Job memory (MEMS) and READ ranges (SDATA) move through it instead of as hex on
 * the console, which carries about 8 KB/s under TCG. Without the device the hex
 * lines (MEM, DATA) still work. */
#define IVSHMEM_VENDOR "0x1af4"
#define IVSHMEM_DEVICE "0x1110"

static volatile uint8_t *shm;
static uint64_t shm_size;

static int read_word(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t k = read(fd, buf, n - 1);
	close(fd);
	if (k <= 0)
		return -1;
	buf[k] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static void shm_open_device(void)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	char path[300], word[32];
	while (d && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", e->d_name);
		if (read_word(path, word, sizeof(word)) < 0 || strcmp(word, IVSHMEM_VENDOR) != 0)
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", e->d_name);
		if (read_word(path, word, sizeof(word)) < 0 || strcmp(word, IVSHMEM_DEVICE) != 0)
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/enable", e->d_name);
		int en = open(path, O_WRONLY | O_CLOEXEC);
		if (en >= 0) {
			if (write(en, "1", 1) < 0)
				out("INFO shm-enable errno=%d\n", errno);
			close(en);
		}
		/* BAR 2 is the memory; write-combining (Normal Non-cacheable) if offered */
		static const char *const bar[] = {"resource2_wc", "resource2"};
		int fd = -1;
		for (size_t k = 0; fd < 0 && k < 2; k++) {
			snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", e->d_name, bar[k]);
			fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);
		}
		struct stat st;
		if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) {
			void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			if (p != MAP_FAILED) {
				shm = p;
				shm_size = (uint64_t)st.st_size;
			} else {
				out("INFO shm-mmap errno=%d\n", errno);
			}
		}
		if (fd >= 0)
			close(fd);
		break;
	}
	if (d)
		closedir(d);
}

/* Copies that suit a BAR mapped as Device memory: 8-byte accesses when both
 * sides are aligned, single bytes otherwise. */
static void copy_in(uint8_t *dst, const volatile uint8_t *src, uint64_t len)
{
	uint64_t i = 0;
	if (((uintptr_t)dst | (uintptr_t)src) % 8 == 0)
		for (; i + 8 <= len; i += 8)
			*(uint64_t *)(dst + i) = *(const volatile uint64_t *)(src + i);
	for (; i < len; i++)
		dst[i] = src[i];
}

static void copy_out(volatile uint8_t *dst, const uint8_t *src, uint64_t len)
{
	uint64_t i = 0;
	if (((uintptr_t)dst | (uintptr_t)src) % 8 == 0)
		for (; i + 8 <= len; i += 8)
			*(volatile uint64_t *)(dst + i) = *(const uint64_t *)(src + i);
	for (; i < len; i++)
		dst[i] = src[i];
}

/* ---- input: lines from the console ------------------------------------- */

static char inbuf[1 << 16];
static size_t inlen, inpos;

/* Next line without its newline, NUL-terminated; *too_long set if it was cut. */
static char *read_line(int *too_long)
{
	static char line[MAX_LINE + 1];
	size_t n = 0;
	*too_long = 0;
	for (;;) {
		if (inpos == inlen) {
			ssize_t r = read(console_fd, inbuf, sizeof(inbuf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				sleep(1); /* no host yet: wait, never spin */
				continue;
			}
			inlen = (size_t)r;
			inpos = 0;
		}
		char c = inbuf[inpos++];
		if (c == '\n' || c == '\r') {
			if (n == 0 && !*too_long)
				continue; /* empty line, or the \n of a \r\n */
			line[n] = '\0';
			return line;
		}
		if (n < MAX_LINE)
			line[n++] = c;
		else
			*too_long = 1;
	}
}

/* ---- parsing ------------------------------------------------------------ */

static int parse_u64(const char *s, uint64_t *v)
{
	if (s == NULL || *s == '\0')
		return -1;
	int base = 10;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		if (*s == '\0')
			return -1;
	}
	uint64_t acc = 0;
	for (; *s; s++) {
		int d;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			return -1;
		if (acc > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
			return -1;
		acc = acc * (uint64_t)base + (uint64_t)d;
	}
	*v = acc;
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int valid_id(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && s[n] != '-' && s[n] != '_' && s[n] != '.')
			return 0;
	return n > 0 && n <= 64;
}

/* Split `line` in place into at most `max` space-separated words. */
static int split(char *line, char **words, int max)
{
	int n = 0;
	char *save = NULL;
	for (char *w = strtok_r(line, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		if (n == max)
			return max + 1;
		words[n++] = w;
	}
	return n;
}

/* ---- a job --------------------------------------------------------------- */

struct range {
	uint64_t addr, len;
};

struct job {
	int open;
	char id[65];
	int nvhe;
	char error[ERR_LEN]; /* first error found while reading the job */
	uint8_t *ram;
	uint64_t entry;
	int has_entry;
	uint64_t xregs[31];
	uint32_t xset;
	uint64_t sp_el1;
	int has_sp_el1;
	struct range reads[MAX_READS];
	int nreads;
	uint64_t read_total;
};

static struct job job; /* the job being read */
static struct job group[MAX_GROUP]; /* the queued jobs, then the one RUN closes */
static int ngroup;
static uint64_t shm_in; /* where the next MEMS block starts: 0 for a group's first job */

__attribute__((format(printf, 2, 3))) static void fail(struct job *j, const char *fmt, ...)
{
	if (j->error[0])
		return; /* keep the first error */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->error, sizeof(j->error), fmt, ap);
	va_end(ap);
}

#define job_fail(...) fail(&job, __VA_ARGS__)

static int in_ram(uint64_t addr, uint64_t len)
{
	return addr >= RAM_BASE && len <= RAM_SIZE && addr - RAM_BASE <= RAM_SIZE - len;
}

/* ---- VMs: a new one per job, never destroyed ------------------------------- */

/* Destroying a VM with a nested vCPU and a vGIC costs seconds of CPU under TCG
 * (measured: about 3 s in the kernel, not preemptible enough to leave the console
 * alone meanwhile), and a vCPU reset by KVM_ARM_VCPU_INIT after a run is not
 * reliable with NV. So each job gets a new VM, and after the answer its RAM is
 * unmapped (KVM drops it from every stage 2) and its file descriptors are kept:
 * a VM that never runs again costs some kernel memory and no CPU. The host
 * restarts the guest when the answer's vms= or mem_kb= say it is full. */
#define MAX_VMS 1000

struct vmctx {
	int vm, vcpu, gic;
	volatile struct kvm_run *run;
	size_t run_size;
};

static int vms_alive;

static void vm_retire(struct vmctx *v)
{
	if (v->run != MAP_FAILED)
		munmap((void *)v->run, v->run_size);
	if (v->vm >= 0)
		vms_alive++; /* its descriptors stay open: the VM lives on, idle */
}

static long mem_available_kb(void)
{
	char buf[4096];
	int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *m = strstr(buf, "MemAvailable:");
	return m ? strtol(m + strlen("MemAvailable:"), NULL, 10) : -1;
}

/* Forget a job that did not run (its RAM is unmapped) or did (its RAM stays, ram NULL). */
static void job_close(struct job *j)
{
	if (j->ram)
		munmap(j->ram, RAM_SIZE);
	memset(j, 0, sizeof(*j));
}

static void job_open(const char *id, const char *mode)
{
	job_close(&job);
	if (ngroup == 0)
		shm_in = 0;
	job.open = 1;
	snprintf(job.id, sizeof(job.id), "%s", id);
	if (strcmp(mode, "vhe") == 0)
		job.nvhe = 0;
	else if (strcmp(mode, "nvhe") == 0)
		job.nvhe = 1;
	else
		job_fail("bad mode %.40s (vhe or nvhe)", mode);
	void *p = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		job_fail("no-memory errno=%d", errno);
		return;
	}
	madvise(p, RAM_SIZE, MADV_NOHUGEPAGE); /* a kept VM holds only the pages it used */
	job.ram = p;
}

static void cmd_mem(char **w, int n)
{
	uint64_t addr;
	if (n != 3 || parse_u64(w[1], &addr) < 0) {
		job_fail("malformed MEM");
		return;
	}
	size_t hexlen = strlen(w[2]);
	if (hexlen % 2 != 0) {
		job_fail("odd hex length in MEM");
		return;
	}
	uint64_t len = hexlen / 2;
	if (!in_ram(addr, len)) {
		job_fail("MEM outside RAM at 0x%" PRIx64 " len %" PRIu64, addr, len);
		return;
	}
	if (job.ram == NULL)
		return;
	uint8_t *dst = job.ram + (addr - RAM_BASE);
	for (uint64_t i = 0; i < len; i++) {
		int hi = hexval(w[2][2 * i]), lo = hexval(w[2][2 * i + 1]);
		if (hi < 0 || lo < 0) {
			job_fail("bad hex in MEM");
			return;
		}
		dst[i] = (uint8_t)(hi << 4 | lo);
	}
}

/* MEMS <addr> <len>: the next <len> bytes of the shared memory (blocks follow
 * each other from offset 0) go to guest RAM at <addr>. */
static void cmd_mems(char **w, int n)
{
	uint64_t addr, len;
	if (n != 3 || parse_u64(w[1], &addr) < 0 || parse_u64(w[2], &len) < 0) {
		job_fail("malformed MEMS");
		return;
	}
	if (!in_ram(addr, len)) {
		job_fail("MEMS outside RAM at 0x%" PRIx64 " len %" PRIu64, addr, len);
		return;
	}
	if (shm == NULL || len > shm_size - shm_in) {
		job_fail("MEMS beyond the shared memory (%" PRIu64 " bytes)", shm_size);
		return;
	}
	if (job.ram)
		copy_in(job.ram + (addr - RAM_BASE), shm + shm_in, len);
	shm_in += len;
}

static void cmd_reg(char **w, int n)
{
	uint64_t v, idx;
	if (n != 3 || parse_u64(w[2], &v) < 0) {
		job_fail("malformed REG");
		return;
	}
	if (strcmp(w[1], "sp_el1") == 0) {
		job.sp_el1 = v;
		job.has_sp_el1 = 1;
	} else if (w[1][0] == 'x' && parse_u64(w[1] + 1, &idx) == 0 && idx < 31) {
		job.xregs[idx] = v;
		job.xset |= 1U << idx;
	} else {
		job_fail("unknown register %.20s", w[1]);
	}
}

static void cmd_read(char **w, int n)
{
	uint64_t addr, len;
	if (n != 3 || parse_u64(w[1], &addr) < 0 || parse_u64(w[2], &len) < 0) {
		job_fail("malformed READ");
		return;
	}
	if (len == 0 || !in_ram(addr, len)) {
		job_fail("READ outside RAM at 0x%" PRIx64 " len %" PRIu64, addr, len);
		return;
	}
	if (job.nreads == MAX_READS || len > MAX_READ_TOTAL - job.read_total) {
		job_fail("too much to READ");
		return;
	}
	job.reads[job.nreads].addr = addr;
	job.reads[job.nreads].len = len;
	job.nreads++;
	job.read_total += len;
}

/* ---- running the VMs: one thread per job, pinned to its CPU ---------------- */

static int kvm_fd = -1;
static int ncpus = 1; /* CPUs online, read at start */

static void on_kick(int sig)
{
	(void)sig; /* only there to make a vCPU thread's KVM_RUN return EINTR */
}

static uint64_t core_reg_id(size_t offset)
{
	return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | (offset / sizeof(uint32_t));
}

static int set_core(int vcpu, size_t offset, uint64_t value)
{
	struct kvm_one_reg reg = {.id = core_reg_id(offset), .addr = (uint64_t)(uintptr_t)&value};
	return ioctl(vcpu, KVM_SET_ONE_REG, &reg);
}

static int set_attr(int dev, uint32_t group, uint64_t attr, const void *addr)
{
	struct kvm_device_attr a = {.group = group, .attr = attr,
				    .addr = (uint64_t)(uintptr_t)addr};
	return ioctl(dev, KVM_SET_DEVICE_ATTR, &a);
}

struct outcome {
	char error[ERR_LEN];
	uint64_t slots[EXIT_SIZE / 8];
	uint8_t written[EXIT_SIZE / 8];
	unsigned long mmio_exits;
	uint64_t status;
	long create_us, run_us;
	int cpu; /* the CPU the vCPU thread ran on at the end */
};

/* One job of a group, run by its own thread on CPU `cpu`. The main thread sets
 * `stop` (and kvm_run.immediate_exit, and signals the thread) when time is up. */
struct worker {
	struct job *job;
	struct outcome o;
	struct vmctx v;
	pthread_t thread;
	int cpu, started, done;
	unsigned long timeout_ms;
	volatile sig_atomic_t stop;
};

static struct worker workers[MAX_GROUP];
static pthread_mutex_t group_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t group_cond;
static int group_running;

static long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

static uint64_t mmio_value(volatile struct kvm_run *run)
{
	uint64_t v = 0;
	uint32_t len = run->mmio.len <= 8 ? run->mmio.len : 8;
	for (uint32_t i = 0; i < len; i++)
		v |= (uint64_t)run->mmio.data[i] << (8 * i);
	return v;
}

static const char *exit_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_UNKNOWN: return "unknown";
	case KVM_EXIT_EXCEPTION: return "exception";
	case KVM_EXIT_HYPERCALL: return "hypercall";
	case KVM_EXIT_DEBUG: return "debug";
	case KVM_EXIT_FAIL_ENTRY: return "fail entry";
	case KVM_EXIT_INTERNAL_ERROR: return "internal error";
	case KVM_EXIT_SYSTEM_EVENT: return "system event (PSCI off/reset?)";
	case KVM_EXIT_ARM_NISV: return "data abort without a valid syndrome";
	default: return "other";
	}
}

/* Run the vCPU until the program is done, faults, or the time is up. */
static void run_vcpu(struct worker *w)
{
	struct outcome *o = &w->o;
	volatile struct kvm_run *run = w->v.run;
	int vcpu = w->v.vcpu;
	long t0 = now_us();
	for (;;) {
		if (w->stop) {
			snprintf(o->error, sizeof(o->error), "timeout after %lu ms", w->timeout_ms);
			break;
		}
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			snprintf(o->error, sizeof(o->error), "kvm KVM_RUN errno=%d (%s)", errno,
				 strerror(errno));
			break;
		}
		if (run->exit_reason == KVM_EXIT_INTR)
			continue;
		if (run->exit_reason != KVM_EXIT_MMIO) {
			snprintf(o->error, sizeof(o->error), "kvm exit reason %u (%s)",
				 run->exit_reason, exit_name(run->exit_reason));
			break;
		}
		uint64_t pa = run->mmio.phys_addr;
		if (!run->mmio.is_write) {
			snprintf(o->error, sizeof(o->error), "mmio read at 0x%" PRIx64, pa);
			break;
		}
		if (pa < EXIT_PA || pa >= EXIT_PA + EXIT_SIZE || (pa & 7) != 0) {
			snprintf(o->error, sizeof(o->error), "mmio write at 0x%" PRIx64, pa);
			break;
		}
		if (++o->mmio_exits > MAX_MMIO_EXITS) {
			snprintf(o->error, sizeof(o->error), "too many exit-page stores");
			break;
		}
		uint64_t off = pa - EXIT_PA, value = mmio_value(run);
		o->slots[off / 8] = value;
		o->written[off / 8] = 1;
		if (off == EXIT_DONE) {
			o->status = value;
			if (value != 0)
				snprintf(o->error, sizeof(o->error), "program status %" PRIu64, value);
			break;
		}
		if (off == EXIT_EXCEPTION) {
			snprintf(o->error, sizeof(o->error),
				 "exception vector=0x%" PRIx64 " esr=0x%" PRIx64 " elr=0x%" PRIx64
				 " far=0x%" PRIx64 " spsr=0x%" PRIx64,
				 value, o->slots[EXIT_ESR / 8], o->slots[EXIT_ELR / 8],
				 o->slots[EXIT_FAR / 8], o->slots[EXIT_SPSR / 8]);
			break;
		}
	}
	o->run_us = now_us() - t0;
}

#define FAIL(...)                                                   \
	do {                                                        \
		snprintf(o->error, sizeof(o->error), __VA_ARGS__);  \
		return -1;                                          \
	} while (0)

/* A new VM with one vCPU at EL2 (E2H0 for nVHE) and a vGICv3, RAM j->ram. */
static int vm_create(struct vmctx *v, const struct job *j, struct outcome *o)
{
	struct kvm_vcpu_init init;
	if (kvm_fd < 0)
		FAIL("no /dev/kvm");
	v->vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (v->vm < 0)
		FAIL("kvm KVM_CREATE_VM errno=%d", errno);
	struct kvm_userspace_memory_region mem = {
		.slot = 0, .guest_phys_addr = RAM_BASE, .memory_size = RAM_SIZE,
		.userspace_addr = (uint64_t)(uintptr_t)j->ram};
	if (ioctl(v->vm, KVM_SET_USER_MEMORY_REGION, &mem) < 0)
		FAIL("kvm KVM_SET_USER_MEMORY_REGION errno=%d", errno);
	struct kvm_create_device cd = {.type = KVM_DEV_TYPE_ARM_VGIC_V3};
	if (ioctl(v->vm, KVM_CREATE_DEVICE, &cd) < 0)
		FAIL("kvm vGICv3 KVM_CREATE_DEVICE errno=%d", errno);
	v->gic = (int)cd.fd;
	uint64_t gicd = GICD_PA, gicr = GICR_PA;
	if (set_attr(v->gic, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &gicd) < 0 ||
	    set_attr(v->gic, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST, &gicr) < 0)
		FAIL("kvm vGICv3 addresses errno=%d", errno);
	v->vcpu = ioctl(v->vm, KVM_CREATE_VCPU, 0);
	if (v->vcpu < 0)
		FAIL("kvm KVM_CREATE_VCPU errno=%d", errno);
	int sz = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0)
		FAIL("kvm KVM_GET_VCPU_MMAP_SIZE errno=%d", errno);
	v->run_size = (size_t)sz;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
	if (v->run == MAP_FAILED)
		FAIL("mmap of kvm_run errno=%d", errno);
	memset(&init, 0, sizeof(init));
	if (ioctl(v->vm, KVM_ARM_PREFERRED_TARGET, &init) < 0)
		FAIL("kvm KVM_ARM_PREFERRED_TARGET errno=%d", errno);
	init.features[0] |= 1U << KVM_ARM_VCPU_HAS_EL2;
	if (j->nvhe)
		init.features[0] |= 1U << KVM_ARM_VCPU_HAS_EL2_E2H0;
	if (ioctl(v->vcpu, KVM_ARM_VCPU_INIT, &init) < 0)
		FAIL("kvm KVM_ARM_VCPU_INIT (%s) errno=%d", j->nvhe ? "nvhe" : "vhe", errno);
	if (set_attr(v->gic, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL) < 0)
		FAIL("kvm vGICv3 init errno=%d", errno);
	return 0;
}

/* PC, PSTATE (EL2h, DAIF masked) and the job's registers. */
static int vcpu_load(struct vmctx *v, const struct job *j, struct outcome *o)
{
	if (set_core(v->vcpu, offsetof(struct kvm_regs, regs.pstate), PSTATE_EL2H_MASKED) < 0 ||
	    set_core(v->vcpu, offsetof(struct kvm_regs, regs.pc), j->entry) < 0)
		FAIL("kvm KVM_SET_ONE_REG pc/pstate errno=%d", errno);
	for (int i = 0; i < 31; i++)
		if ((j->xset & (1U << i)) &&
		    set_core(v->vcpu, offsetof(struct kvm_regs, regs.regs[i]), j->xregs[i]) < 0)
			FAIL("kvm KVM_SET_ONE_REG x%d errno=%d", i, errno);
	if (j->has_sp_el1 && set_core(v->vcpu, offsetof(struct kvm_regs, sp_el1), j->sp_el1) < 0)
		FAIL("kvm KVM_SET_ONE_REG sp_el1 errno=%d", errno);
	return 0;
}
#undef FAIL

/* A worker thread: pinned to its CPU, it runs its job in a new VM. */
static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct outcome *o = &w->o;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		snprintf(o->error, sizeof(o->error), "sched_setaffinity CPU %d errno=%d", w->cpu,
			 errno);
	long t0 = now_us();
	if (!o->error[0] && vm_create(&w->v, w->job, o) == 0)
		vcpu_load(&w->v, w->job, o);
	o->create_us = now_us() - t0;
	if (!o->error[0])
		run_vcpu(w);
	o->cpu = sched_getcpu();
	pthread_mutex_lock(&group_lock);
	w->done = 1;
	group_running--;
	pthread_cond_signal(&group_cond);
	pthread_mutex_unlock(&group_lock);
	return NULL;
}

static struct timespec ts_after_us(long us)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	long ns = ts.tv_nsec + (us % 1000000L) * 1000L;
	ts.tv_sec += us / 1000000L + ns / 1000000000L;
	ts.tv_nsec = ns % 1000000000L;
	return ts;
}

/* Run the group's jobs that have no error, job k in a new VM on CPU k mod the
 * CPUs online, all at once; when `timeout_ms` is up, stop those still running
 * (their answer: a timeout). The VMs are retired afterwards, never run again. */
static void run_group(unsigned long timeout_ms)
{
	int started = 0;
	for (int k = 0; k < ngroup; k++) {
		struct worker *w = &workers[k];
		memset(w, 0, sizeof(*w));
		w->job = &group[k];
		w->v = (struct vmctx){.vm = -1, .vcpu = -1, .gic = -1, .run = MAP_FAILED};
		w->cpu = k % ncpus;
		w->timeout_ms = timeout_ms;
		w->done = 1;
		if (w->job->error[0])
			continue;
		if (vms_alive + started >= MAX_VMS) {
			snprintf(w->o.error, sizeof(w->o.error), "full: %d VMs, restart the guest",
				 vms_alive);
			continue;
		}
		w->done = 0;
		pthread_mutex_lock(&group_lock);
		group_running++;
		pthread_mutex_unlock(&group_lock);
		int err = pthread_create(&w->thread, NULL, worker_main, w);
		if (err != 0) {
			snprintf(w->o.error, sizeof(w->o.error), "pthread_create errno=%d", err);
			pthread_mutex_lock(&group_lock);
			group_running--;
			pthread_mutex_unlock(&group_lock);
			w->done = 1;
			continue;
		}
		w->started = 1;
		started++;
	}
	struct timespec deadline = ts_after_us((long)timeout_ms * 1000L);
	pthread_mutex_lock(&group_lock);
	while (group_running > 0) {
		if (pthread_cond_timedwait(&group_cond, &group_lock, &deadline) != ETIMEDOUT)
			continue;
		for (int k = 0; k < ngroup; k++) { /* time is up: stop, and kick again later */
			struct worker *w = &workers[k];
			if (w->done)
				continue;
			w->stop = 1;
			if (w->v.run != MAP_FAILED)
				w->v.run->immediate_exit = 1;
			pthread_kill(w->thread, SIGUSR1);
		}
		deadline = ts_after_us(20000);
	}
	pthread_mutex_unlock(&group_lock);
	for (int k = 0; k < ngroup; k++) {
		struct worker *w = &workers[k];
		if (w->started)
			pthread_join(w->thread, NULL);
		vm_retire(&w->v);
	}
}

/* ---- the kernel's log ---------------------------------------------------- */

static int kmsg_fd = -1;

/* Open /dev/kmsg at its end: from then on, what the kernel logs is ours to report. */
static void kmsg_open(void)
{
	kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (kmsg_fd >= 0)
		lseek(kmsg_fd, 0, SEEK_END);
}

/* Warnings and worse the kernel logged since the last call ("KLOG <level> <text>"):
 * a WARN or BUG in KVM while a job ran makes its answer suspect. */
static void kmsg_report(void)
{
	char rec[2048];
	if (kmsg_fd < 0)
		return;
	for (;;) {
		ssize_t n = read(kmsg_fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue; /* records were overwritten: go on with the next */
		if (n <= 0)
			return;
		rec[n] = '\0';
		char *text = strchr(rec, ';');
		if (text == NULL)
			continue;
		*text++ = '\0';
		unsigned long level = strtoul(rec, NULL, 10) & 7;
		char *nl = strchr(text, '\n');
		if (nl)
			*nl = '\0';
		for (char *c = text; *c; c++)
			if (!isprint((unsigned char)*c))
				*c = '?';
		if (level <= 4)
			out("KLOG %lu %.300s\n", level, text);
	}
}

/* Send a READ range: DATA lines for its 8-byte words, runs of zero words left
 * out (the host starts from zeros): the console is much slower out than in. */
static void send_range(const struct job *j, uint64_t addr, uint64_t len)
{
	const uint8_t *base = j->ram + (addr - RAM_BASE);
	static const uint8_t zero[8];
	uint64_t i = 0;
	while (i < len) {
		uint64_t w = len - i < 8 ? len - i : 8;
		if (memcmp(base + i, zero, (size_t)w) == 0) {
			i += w;
			continue;
		}
		uint64_t j = i;
		while (j < len && j - i < DATA_CHUNK) {
			uint64_t k = len - j < 8 ? len - j : 8;
			if (memcmp(base + j, zero, (size_t)k) == 0)
				break;
			j += k;
		}
		out("DATA 0x%" PRIx64 " ", addr + i);
		out_hex(base + i, (size_t)(j - i));
		out_raw("\n", 1);
		i = j;
	}
}

static uint64_t shm_out; /* where the next SDATA range goes: 0 for a group's first answer */

/* The answer to job `j`: an error before it ran (o NULL), or how it ran. */
static void answer(const struct job *j, const char *error, const struct outcome *o)
{
	if (error && error[0])
		out("RESULT %s error %s\n", j->id, error);
	else
		out("RESULT %s ok create_us=%ld run_us=%ld exits=%lu cpu=%d vms=%d mem_kb=%ld\n",
		    j->id, o->create_us, o->run_us, o->mmio_exits, o->cpu, vms_alive,
		    mem_available_kb());
	if (o) {
		for (size_t i = 1; i < EXIT_SIZE / 8; i++)
			if (o->written[i])
				out("OUT 0x%zx 0x%" PRIx64 "\n", i * 8, o->slots[i]);
	}
	for (int r = 0; o && j->ram && r < j->nreads; r++) {
		uint64_t addr = j->reads[r].addr, len = j->reads[r].len;
		if (shm != NULL && len <= shm_size - shm_out) {
			copy_out(shm + shm_out, j->ram + (addr - RAM_BASE), len);
			out("SDATA 0x%" PRIx64 " %" PRIu64 " %" PRIu64 "\n", addr, len, shm_out);
			shm_out += len;
		} else {
			send_range(j, addr, len);
		}
	}
	kmsg_report();
	out("END %s\n", j->id);
	out_flush();
}

/* QUEUE: the job is complete and waits for the next RUN, to run beside it. */
static void cmd_queue(int n)
{
	if (n != 1)
		job_fail("malformed QUEUE");
	else if (!job.has_entry)
		job_fail("no ENTRY");
	if (ngroup == MAX_GROUP - 1) {
		answer(&job, "too many jobs queued (at most " STR(MAX_GROUP) " a RUN)", NULL);
		job_close(&job);
		return;
	}
	group[ngroup++] = job;
	memset(&job, 0, sizeof(job));
}

/* RUN: the queued jobs and this one run at once, each in its VM on its CPU;
 * then each is answered, in the order they came. */
static void cmd_run(char **w, int n)
{
	uint64_t timeout_ms = 0;
	int malformed = n != 2 || parse_u64(w[1], &timeout_ms) < 0 || timeout_ms == 0 ||
			timeout_ms > MAX_TIMEOUT_MS;
	if (!malformed && !job.has_entry)
		job_fail("no ENTRY");
	group[ngroup++] = job;
	memset(&job, 0, sizeof(job));
	for (int k = 0; malformed && k < ngroup; k++)
		fail(&group[k], "malformed RUN (timeout 1..%lu ms)", MAX_TIMEOUT_MS);
	run_group((unsigned long)timeout_ms);
	shm_out = 0;
	for (int k = 0; k < ngroup; k++) {
		struct job *j = &group[k];
		if (j->error[0])
			answer(j, j->error, NULL);
		else
			answer(j, workers[k].o.error, &workers[k].o);
		/* A VM that ran keeps its RAM, untouched: unmapping it, or giving its
		 * pages back, makes KVM unmap them from the VM's shadow stage 2 tables,
		 * which takes tens of seconds under TCG once the vCPU has run at vEL1. */
		if (workers[k].started)
			j->ram = NULL;
		job_close(j);
	}
	ngroup = 0;
}

static void handle_line(char *line, int too_long)
{
	char *w[5];
	if (too_long) {
		if (job.open)
			job_fail("line too long");
		else
			out("ERROR line too long\n");
		out_flush();
		return;
	}
	int n = split(line, w, 4);
	if (n == 0)
		return;
	if (strcmp(w[0], "PING") == 0) {
		out("PONG\n");
	} else if (strcmp(w[0], "JOB") == 0) {
		if (job.open) {
			answer(&job, "job not run (a new JOB came first)", NULL);
			job_close(&job);
		}
		if (n != 3 || !valid_id(w[1])) {
			out("ERROR malformed JOB (JOB <id> <vhe|nvhe>)\n");
		} else {
			job_open(w[1], w[2]);
			return;
		}
	} else if (!job.open) {
		out("ERROR no job open for %.16s\n", w[0]);
	} else if (n > 3) {
		job_fail("too many words in %.16s", w[0]);
		return;
	} else if (strcmp(w[0], "MEM") == 0) {
		cmd_mem(w, n);
		return;
	} else if (strcmp(w[0], "MEMS") == 0) {
		cmd_mems(w, n);
		return;
	} else if (strcmp(w[0], "REG") == 0) {
		cmd_reg(w, n);
		return;
	} else if (strcmp(w[0], "ENTRY") == 0) {
		if (n != 2 || parse_u64(w[1], &job.entry) < 0 || !in_ram(job.entry, 4))
			job_fail("malformed ENTRY");
		else
			job.has_entry = 1;
		return;
	} else if (strcmp(w[0], "READ") == 0) {
		cmd_read(w, n);
		return;
	} else if (strcmp(w[0], "QUEUE") == 0) {
		cmd_queue(n);
		return;
	} else if (strcmp(w[0], "RUN") == 0) {
		cmd_run(w, n);
		return;
	} else {
		job_fail("unknown command %.16s", w[0]);
		return;
	}
	out_flush();
}

/* ---- boot ---------------------------------------------------------------- */

static void open_console(void)
{
	mkdir("/dev", 0755);
	mkdir("/proc", 0555);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("proc", "/proc", "proc", 0, NULL);
	mkdir("/sys", 0555);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	console_fd = open("/dev/ttyAMA0", O_RDWR | O_NOCTTY);
	if (console_fd < 0)
		console_fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (console_fd < 0)
		_exit(1); /* nothing to talk to: the host sees no banner and times out */
	struct termios t;
	if (tcgetattr(console_fd, &t) == 0) {
		cfmakeraw(&t);
		cfsetspeed(&t, B4000000);
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		tcsetattr(console_fd, TCSANOW, &t);
	}
}

/* The kernel's own KVM lines ("kvm [1]: ... mode initialized ..."). */
static void banner_kvm_log(void)
{
	static char log[1 << 18];
	int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, log, sizeof(log) - 1);
	if (n <= 0)
		return;
	log[n] = '\0';
	char *save = NULL;
	for (char *l = strtok_r(log, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char *k = strstr(l, "kvm [");
		if (k && strstr(k, "initialized"))
			out("INFO kvm %.200s\n", k);
	}
}

static void banner(void)
{
	struct utsname u;
	out("HELLO xcheck-agent %d\n", PROTOCOL_VERSION);
	if (uname(&u) == 0)
		out("INFO kernel %s\n", u.release);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	ncpus = cpus > 0 && cpus <= CPU_SETSIZE ? (int)cpus : 1;
	out("INFO cpus %d\n", ncpus);
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm_fd < 0) {
		out("INFO nokvm errno=%d\n", errno);
	} else {
		out("INFO cap el2=%d e2h0=%d ipa=%d\n", ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_ARM_EL2),
		    ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_ARM_EL2_E2H0),
		    ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE));
	}
	banner_kvm_log();
	shm_open_device();
	if (shm != NULL)
		out("INFO shm %" PRIu64 "\n", shm_size);
	kmsg_open();
	out("READY\n");
	out_flush();
}

int main(void)
{
	open_console();
	klogctl(8 /* SYSLOG_ACTION_CONSOLE_LEVEL */, NULL, 1); /* keep the kernel off the wire */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_kick; /* no SA_RESTART: KVM_RUN returns EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	pthread_condattr_t ca; /* the group's deadline is on the monotonic clock */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&group_cond, &ca);
	signal(SIGPIPE, SIG_IGN);
	struct rlimit nofile = {.rlim_cur = 4 * MAX_VMS + 64, .rlim_max = 4 * MAX_VMS + 64};
	setrlimit(RLIMIT_NOFILE, &nofile); /* three descriptors per kept VM */
	banner();
	for (;;) {
		int too_long;
		char *line = read_line(&too_long);
		handle_line(line, too_long);
	}
}
