/*
 * What the tables above are checked with: a VM with one vCPU at vEL2 (and a
 * vGICv3, which nested virtualisation needs), RAM_SIZE of RAM at RAM_GPA
 * holding the image, PC at ENTRY_GPA with PSTATE = EL2h and DAIF masked. The
 * program writes the scenario's registers, runs each AT at its EL, stores
 * PAR_EL1 (or the exception the AT took) and ends with a store to EXIT_GPA,
 * outside every memslot: a KVM_EXIT_MMIO.
 */
#define PSTATE_EL2H_MASKED	0x3c9ul
#define RECORD_SIZE		32

static struct kvm_vcpu *the_vcpu;
static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
	timed_out = 1;
	the_vcpu->run->immediate_exit = 1;
}

static void add_vgic(struct kvm_vm *vm)
{
	u64 dist = GICD_GPA, redist = GICR_GPA;
	int fd = __kvm_create_device(vm, KVM_DEV_TYPE_ARM_VGIC_V3);

	__TEST_REQUIRE(fd >= 0, "no vGICv3 (nested virtualisation needs one)");
	kvm_device_attr_set(fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &dist);
	kvm_device_attr_set(fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST, &redist);
	vm->arch.gic_fd = fd;
	vm->arch.has_gic = true;
}

static struct kvm_vcpu *add_vcpu(struct kvm_vm *vm)
{
	struct kvm_vcpu_init init;
	struct kvm_vcpu *vcpu = __vm_vcpu_add(vm, 0);

	vm_ioctl(vm, KVM_ARM_PREFERRED_TARGET, &init);
	init.features[0] |= BIT(KVM_ARM_VCPU_HAS_EL2);
	if (E2H0)
		init.features[0] |= BIT(KVM_ARM_VCPU_HAS_EL2_E2H0);
	vcpu_ioctl(vcpu, KVM_ARM_VCPU_INIT, &init);
	kvm_device_attr_set(vm->arch.gic_fd, KVM_DEV_ARM_VGIC_GRP_CTRL,
			    KVM_DEV_ARM_VGIC_CTRL_INIT, NULL);
	vcpu_set_reg(vcpu, ARM64_CORE_REG(regs.pstate), PSTATE_EL2H_MASKED);
	vcpu_set_reg(vcpu, ARM64_CORE_REG(regs.pc), ENTRY_GPA);
	return vcpu;
}

/* Run until the program's store to EXIT_GPA; false on a timeout. */
static bool run_program(struct kvm_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;

	signal(SIGALRM, on_alarm);
	alarm(TIMEOUT_S);
	for (;;) {
		int r = __vcpu_run(vcpu);

		if (r < 0 && errno == EINTR) {
			if (timed_out)
				return false;
			continue;
		}
		TEST_ASSERT(!r, KVM_IOCTL_ERROR(KVM_RUN, r));
		if (run->exit_reason == KVM_EXIT_MMIO && run->mmio.phys_addr == EXIT_GPA) {
			alarm(0);
			return true;
		}
		TEST_ASSERT(run->exit_reason == KVM_EXIT_MMIO,
			    "unexpected exit %s", exit_reason_str(run->exit_reason));
	}
}

/* The answers hold for the CPU KVM shows the guest hypervisor when the ID
 * register fields the model reads are those of the export. */
static bool same_cpu(struct kvm_vcpu *vcpu)
{
	bool same = true;

	for (int i = 0; i < ARRAY_SIZE(id_fields); i++) {
		u64 v = vcpu_get_reg(vcpu, id_fields[i].reg) & id_fields[i].mask;

		if (v != id_fields[i].value) {
			ksft_print_msg("%s = 0x%lx in the fields the model reads, exported for 0x%lx\n",
				       id_fields[i].name, v, id_fields[i].value);
			same = false;
		}
	}
	return same;
}

static void print_par(const char *what, u64 par)
{
	if (par & 1)
		ksft_print_msg("  %s PAR 0x%016lx (fault FST=0x%02lx S=%lu PTW=%lu)\n", what, par,
			       (par >> 1) & 0x3f, (par >> 9) & 1, (par >> 8) & 1);
	else
		ksft_print_msg("  %s PAR 0x%016lx (PA=0x%lx ATTR=0x%02lx SH=%lu NS=%lu)\n", what, par,
			       par & GENMASK(51, 12), par >> 56, (par >> 7) & 3, (par >> 9) & 1);
}

static void print_answer(const struct answer *a)
{
	if (!a->exception_el) {
		print_par("want", a->value);
		ksft_print_msg("       compared in mask 0x%016lx\n", a->mask);
	} else {
		ksft_print_msg("  want an exception to %s%s with ESR & 0x%lx == 0x%lx\n",
			       a->exception_el == 3 ? "any EL" : "EL",
			       a->exception_el == 2 ? "2" : a->exception_el == 1 ? "1" : "",
			       a->mask, a->value);
	}
}

/* Does the probe's PAR, or the exception it took, match a permitted answer? */
static bool passes(const struct probe *p, u64 par, const u64 *rec)
{
	bool took = rec[0] & 1;
	u64 el = (rec[0] >> 8) & 0xff;

	for (u32 k = 0; k < p->n_answers; k++) {
		const struct answer *a = &answers[p->first_answer + k];

		if (!took && !a->exception_el && !((par ^ a->value) & a->mask))
			return true;
		if (took && a->exception_el && (a->exception_el == 3 || a->exception_el == el) &&
		    !((rec[1] ^ a->value) & a->mask))
			return true;
	}
	return false;
}

static void check_probe(u32 i, const u64 *pars, const u64 *records)
{
	const struct probe *p = &probes[i];
	const u64 *rec = &records[i * RECORD_SIZE / 8];
	bool ok = passes(p, pars[i], rec);

	if (!ok) {
		if (rec[0] & 1)
			ksft_print_msg("  got  an exception to EL%lu ESR=0x%lx ELR=0x%lx FAR=0x%lx\n",
				       (rec[0] >> 8) & 0xff, rec[1], rec[2], rec[3]);
		else
			print_par("got ", pars[i]);
		for (u32 k = 0; k < p->n_answers; k++)
			print_answer(&answers[p->first_answer + k]);
	}
	ksft_test_result(ok, "%s\n", p->label);
}

int main(void)
{
	struct kvm_vm *vm;
	const u64 *data;

	ksft_print_header();
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_ARM_EL2));
	if (E2H0)
		TEST_REQUIRE(kvm_check_cap(KVM_CAP_ARM_EL2_E2H0));

	vm = vm_create_barebones();
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, RAM_GPA, 1,
				    RAM_SIZE / vm->page_size, 0);
	add_vgic(vm);
	the_vcpu = add_vcpu(vm);
	for (int i = 0; i < ARRAY_SIZE(image); i++)
		*(u64 *)addr_gpa2hva(vm, image[i].gpa) = image[i].value;

	if (!run_program(the_vcpu))
		ksft_exit_fail_msg("the program did not finish within %d s\n", TIMEOUT_S);
	if (!same_cpu(the_vcpu))
		ksft_exit_skip("the answers were computed for other CPU features\n");
	data = addr_gpa2hva(vm, DATA_GPA);
	if (data[(RECORDS + N_PROBES * RECORD_SIZE) / 8] & 1)
		ksft_exit_fail_msg("writing the system registers took an exception: ESR=0x%lx\n",
				   data[(RECORDS + N_PROBES * RECORD_SIZE) / 8 + 1]);

	ksft_set_plan(N_PROBES);
	for (u32 i = 0; i < N_PROBES; i++)
		check_probe(i, data, &data[RECORDS / 8]);
	kvm_vm_free(vm);
	ksft_finished();
}
