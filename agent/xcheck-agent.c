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
 *   RUN <timeout_ms>         create the VM, run it, answer
 *
 * Answer:  RESULT <id> ok <stats> | RESULT <id> error <reason>
 *          OUT <offset> <value>  (stores the program made to the exit page)
 *          DATA <addr> <hex>     (the READ ranges)
 *          SDATA <addr> <len> <offset>  (a READ range, at <offset> in the shared memory)
 *          KLOG <level> <text>   (kernel warnings and worse logged meanwhile)
 *          END <id>
 * Outside a job: PING -> PONG; a line that is not a command -> ERROR <why>.
 *
 * The program ends by a store to EXIT_PA (+0: done, value = status) or reports
 * an exception by storing ESR/ELR/FAR/SPSR to EXIT_PA+0x10..0x28 and then the
 * vector offset to EXIT_PA+0x08. Both are outside guest RAM, so each store is a
 * KVM_EXIT_MMIO. A timer (SIGALRM + kvm_run.immediate_exit) ends a run that
 * does not finish in time. Every address and length from the host is checked.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

#define PROTOCOL_VERSION 2
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
	uint64_t shm_in; /* where the next MEMS block starts in the shared memory */
};

static struct job job;

__attribute__((format(printf, 1, 2))) static void job_fail(const char *fmt, ...)
{
	if (job.error[0])
		return; /* keep the first error */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(job.error, sizeof(job.error), fmt, ap);
	va_end(ap);
}

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

static void job_close(void)
{
	if (job.ram)
		munmap(job.ram, RAM_SIZE);
	memset(&job, 0, sizeof(job));
}

static void job_open(const char *id, const char *mode)
{
	job_close();
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
	if (shm == NULL || len > shm_size - job.shm_in) {
		job_fail("MEMS beyond the shared memory (%" PRIu64 " bytes)", shm_size);
		return;
	}
	if (job.ram)
		copy_in(job.ram + (addr - RAM_BASE), shm + job.shm_in, len);
	job.shm_in += len;
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

/* ---- running the VM ------------------------------------------------------ */

static int kvm_fd = -1;
static volatile struct kvm_run *volatile current_run;
static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
	(void)sig;
	timed_out = 1;
	if (current_run)
		current_run->immediate_exit = 1;
}

static void set_timer(unsigned long ms)
{
	struct itimerval it;
	memset(&it, 0, sizeof(it));
	if (ms) {
		it.it_value.tv_sec = (time_t)(ms / 1000);
		it.it_value.tv_usec = (suseconds_t)(ms % 1000) * 1000;
		it.it_interval.tv_usec = 20000; /* re-kick if the first signal raced KVM_RUN */
	}
	setitimer(ITIMER_REAL, &it, NULL);
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
};

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
static void run_vcpu(int vcpu, volatile struct kvm_run *run, unsigned long timeout_ms,
		     struct outcome *o)
{
	timed_out = 0;
	run->immediate_exit = 0;
	current_run = run;
	set_timer(timeout_ms);
	long t0 = now_us();
	for (;;) {
		if (timed_out) {
			snprintf(o->error, sizeof(o->error), "timeout after %lu ms", timeout_ms);
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
	set_timer(0);
	current_run = NULL;
}

#define FAIL(...)                                                   \
	do {                                                        \
		snprintf(o->error, sizeof(o->error), __VA_ARGS__);  \
		return -1;                                          \
	} while (0)

/* A new VM with one vCPU at EL2 (E2H0 for nVHE) and a vGICv3, RAM job.ram. */
static int vm_create(struct vmctx *v, struct outcome *o)
{
	struct kvm_vcpu_init init;
	if (kvm_fd < 0)
		FAIL("no /dev/kvm");
	v->vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (v->vm < 0)
		FAIL("kvm KVM_CREATE_VM errno=%d", errno);
	struct kvm_userspace_memory_region mem = {
		.slot = 0, .guest_phys_addr = RAM_BASE, .memory_size = RAM_SIZE,
		.userspace_addr = (uint64_t)(uintptr_t)job.ram};
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
	if (job.nvhe)
		init.features[0] |= 1U << KVM_ARM_VCPU_HAS_EL2_E2H0;
	if (ioctl(v->vcpu, KVM_ARM_VCPU_INIT, &init) < 0)
		FAIL("kvm KVM_ARM_VCPU_INIT (%s) errno=%d", job.nvhe ? "nvhe" : "vhe", errno);
	if (set_attr(v->gic, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL) < 0)
		FAIL("kvm vGICv3 init errno=%d", errno);
	return 0;
}

/* PC, PSTATE (EL2h, DAIF masked) and the job's registers. */
static int vcpu_load(struct vmctx *v, struct outcome *o)
{
	if (set_core(v->vcpu, offsetof(struct kvm_regs, regs.pstate), PSTATE_EL2H_MASKED) < 0 ||
	    set_core(v->vcpu, offsetof(struct kvm_regs, regs.pc), job.entry) < 0)
		FAIL("kvm KVM_SET_ONE_REG pc/pstate errno=%d", errno);
	for (int i = 0; i < 31; i++)
		if ((job.xset & (1U << i)) &&
		    set_core(v->vcpu, offsetof(struct kvm_regs, regs.regs[i]), job.xregs[i]) < 0)
			FAIL("kvm KVM_SET_ONE_REG x%d errno=%d", i, errno);
	if (job.has_sp_el1 && set_core(v->vcpu, offsetof(struct kvm_regs, sp_el1), job.sp_el1) < 0)
		FAIL("kvm KVM_SET_ONE_REG sp_el1 errno=%d", errno);
	return 0;
}
#undef FAIL

/* Run the job in a new VM; the VM is retired afterwards, never run again. */
static void run_job(unsigned long timeout_ms, struct outcome *o)
{
	long t0 = now_us();
	struct vmctx v = {.vm = -1, .vcpu = -1, .gic = -1, .run = MAP_FAILED};
	if (vms_alive >= MAX_VMS)
		snprintf(o->error, sizeof(o->error), "full: %d VMs, restart the guest", vms_alive);
	else if (vm_create(&v, o) == 0)
		vcpu_load(&v, o);
	o->create_us = now_us() - t0;
	if (!o->error[0])
		run_vcpu(v.vcpu, v.run, timeout_ms, o);
	vm_retire(&v);
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
static void send_range(uint64_t addr, uint64_t len)
{
	const uint8_t *base = job.ram + (addr - RAM_BASE);
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

static void answer(const char *id, const char *error, const struct outcome *o, int send_data)
{
	if (error && error[0])
		out("RESULT %s error %s\n", id, error);
	else
		out("RESULT %s ok create_us=%ld run_us=%ld exits=%lu vms=%d mem_kb=%ld\n", id,
		    o->create_us, o->run_us, o->mmio_exits, vms_alive, mem_available_kb());
	if (o) {
		for (size_t i = 1; i < EXIT_SIZE / 8; i++)
			if (o->written[i])
				out("OUT 0x%zx 0x%" PRIx64 "\n", i * 8, o->slots[i]);
	}
	uint64_t at = 0; /* with shared memory, the READ ranges follow each other from 0 */
	for (int r = 0; send_data && job.ram && r < job.nreads; r++) {
		uint64_t addr = job.reads[r].addr, len = job.reads[r].len;
		if (shm != NULL && len <= shm_size - at) {
			copy_out(shm + at, job.ram + (addr - RAM_BASE), len);
			out("SDATA 0x%" PRIx64 " %" PRIu64 " %" PRIu64 "\n", addr, len, at);
			at += len;
		} else {
			send_range(addr, len);
		}
	}
	kmsg_report();
	out("END %s\n", id);
	out_flush();
}

static void cmd_run(char **w, int n)
{
	uint64_t timeout_ms = 0;
	if (n != 2 || parse_u64(w[1], &timeout_ms) < 0 || timeout_ms == 0 ||
	    timeout_ms > MAX_TIMEOUT_MS)
		job_fail("malformed RUN (timeout 1..%lu ms)", MAX_TIMEOUT_MS);
	else if (!job.has_entry)
		job_fail("no ENTRY");
	if (job.error[0]) {
		answer(job.id, job.error, NULL, 0);
		job_close();
		return;
	}
	static struct outcome o;
	memset(&o, 0, sizeof(o));
	run_job((unsigned long)timeout_ms, &o);
	answer(job.id, o.error, &o, 1);
	/* The retired VM keeps its RAM, untouched: unmapping it, or giving its pages
	 * back, makes KVM unmap them from the VM's shadow stage 2 tables, which takes
	 * tens of seconds under TCG once the vCPU has run at vEL1. */
	job.ram = NULL;
	job_close();
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
			answer(job.id, "job not run (a new JOB came first)", NULL, 0);
			job_close();
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
	sa.sa_handler = on_alarm; /* no SA_RESTART: KVM_RUN returns EINTR */
	sigaction(SIGALRM, &sa, NULL);
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
