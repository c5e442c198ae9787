"""The registry of the rules the model decides by.

Each member names one ASL function, or one branch of it, that can decide
what an AT reports; the model records it in the trace step where it decided
(TraceStep.cites), so the registry is every answer the model can give a
reason for, and coverage (xcheck fuzz) can name the ones a campaign never
reached. A member the model no longer cites is caught by the tests.
Sections are those of Arm ARM DDI 0487 (chapter D8, C5.4, D24.2).
"""

from __future__ import annotations

from xcheck.machine import IdentityEnum


class Rule(IdentityEnum):
    # C5.4, AArch64.AT: which regime an AT operation translates, or none
    AT_UNDEFINED_AT_EL = "C5.4: AT UNDEFINED at this EL"
    AT_NEEDS_PAN2 = "C5.4.9: AT S1E1RP/WP UNDEFINED without FEAT_PAN2"
    AT_EL2_OP_UNDEFINED_AT_EL1 = "C5.4: AT S1E2*/S12* UNDEFINED at EL1"
    AT_TRAP_NV = "C5.4: AT S1E2*/S12* at EL1 with HCR_EL2.NV == 1 traps to EL2"
    AT_TRAP_HCR_AT = "C5.4: AT at EL1 with HCR_EL2.AT == 1 traps to EL2"
    AT_NEEDS_ATS1A = "C5.4.7, C5.4.12: AT S1E1A/S1E2A UNDEFINED without FEAT_ATS1A"
    AT_ANY_NO_PERMISSIONS = ("CreateAccDescAT ATAccess_Any: AT S1E*A, no stage 1 "
                             "permission check")
    REGIME_EL2 = "C5.4 TranslationRegime: AT S1E2* in the EL2 regime"
    REGIME_EL20 = "C5.4 TranslationRegime: AT S1E2* in the EL2&0 regime (E2H == 1)"
    REGIME_HOST = "AArch64.AT: {E2H, TGE} == {1, 1}, EL1 and EL0 ops in the EL2&0 regime"
    REGIME_EL10 = "AArch64.AT: EL1&0 regime, stage 1"
    REGIME_EL10_S12 = "AArch64.AT: EL1&0 regime, stages 1 and 2"
    AT_EL3_OP_UNDEFINED_BELOW_EL3 = "C5.4.16: AT S1E3* UNDEFINED below EL3"
    AT_S1E2_UNDEFINED_AT_EL3 = ("C5.4.13: AT S1E2* at EL3 UNDEFINED when EL2 is not enabled in "
                                "the Security state SCR_EL3.NS selects")
    REGIME_EL3 = "C5.4.16 TranslationRegime(EL3): AT S1E3* in the EL3 regime (Secure)"
    REGIME_EL10_SECURE = ("AArch64.AT at EL3 with SCR_EL3.NS == 0 and EL2 not enabled: the Secure "
                          "EL1&0 regime, stage 1 only")
    REGIME_EL10_SECURE_EL1 = ("AArch64.AT at Secure EL1 with EL2 not enabled: the Secure EL1&0 "
                              "regime, stage 1 only, HCR_EL2 without effect")
    SECURE_EL2_ENABLED = ("EL2Enabled() in the Secure state: SCR_EL3.EEL2 == 1 with FEAT_SEL2, "
                          "the Secure EL2, EL2&0 and EL1&0 (with stage 2) regimes")
    AT_ROOT_UNDEFINED = ("AArch64.AT: at EL3 with SCR_EL3.{NSE, NS} == {1, 0} (Root), an AT "
                         "other than S1E3* is UNDEFINED")
    REALM_EL2_ENABLED = ("EL2Enabled() in the Realm state (SCR_EL3.{NSE, NS} == {1, 1}): the "
                         "Realm EL2, EL2&0 and EL1&0 (with stage 2) regimes")
    AT_ABORT_EXTERNAL = "AArch64.AT: External abort on a walk taken as a Data Abort"
    AT_ABORT_S2_ON_WALK_EL1 = "AArch64.AT: stage 2 fault on the stage 1 walk from EL1 taken"
    ENCODE_PAR = "AArch64.EncodePAR: successful translation"
    AF_UPDATE_S2_FAULT = ("AArch64.S1Translate: the AT's permitted AF update faults at stage 2 "
                          "from EL1 (CreateAccDescTTEUpdate)")

    # AArch64.S1Translate, AArch64.S1Walk (D8.2, D8.3)
    S1_DISABLED = "AArch64.S1Enabled: stage 1 disabled, output address = VA"
    S1_DISABLED_ADDRESS_SIZE = "AArch64.S1DisabledOutput: VA above PAMax, Address size fault"
    S1_TXSZ_FAULT = "AArch64.S1TxSZFaults: TxSZ out of range, Translation fault"
    S1_VA_OUT_OF_RANGE = "AArch64.VAIsOutOfRange: VA outside the TTBR range"
    S1_E0PD = "AArch64.S1Translate: TCR.E0PDx == 1 for an EL0 access (FEAT_E0PD)"
    S1_EPD = "AArch64.S1Walk: TCR.EPDx == 1, walks disabled"
    S1_START = "AArch64.S1StartLevel: stage 1 walk started"
    S1_BASE_ADDRESS_SIZE = "AArch64.S1Walk: table base above the OA size"
    S1_EXTERNAL_ABORT = "FetchDescriptor: stage 1 descriptor read has no memory"
    S1_TABLE = "AArch64.DecodeDescriptorType: stage 1 table descriptor"
    S1_BLOCK = "AArch64.DecodeDescriptorType: stage 1 block descriptor"
    S1_PAGE = "AArch64.DecodeDescriptorType: stage 1 page descriptor"
    S1_NEXT_TABLE_ADDRESS_SIZE = "AArch64.S1Walk: next-level table above the OA size"
    S1_INVALID = "AArch64.DecodeDescriptorType: stage 1 descriptor bit[0] == 0"
    S1_BLOCK_NOT_SUPPORTED = "AArch64.BlockDescSupported: stage 1 block not allowed at the level"
    S1_OUTPUT_ADDRESS_SIZE = "AArch64.S1Walk: output address above the OA size"
    S1_ACCESS_FLAG = "AArch64.S1Walk: AF == 0 with TCR.HA == 0, Access flag fault"
    S1_NSTABLE = ("AArch64.S1Walk: NSTable == 1 in a Secure regime, later levels and the output "
                  "in the Non-secure PA space")
    S1_ROOT_FETCH = ("AArch64.S1ComputePermissions: no instruction fetch by the Root state from a "
                     "non-Root PA space (FEAT_RME)")
    S1_OUTPUT_PASPACE = ("AArch64.S1Walk (D8.4.6): a Secure regime's output PA space from the "
                         "leaf's NS bit, the Root state's from NSE and NS")
    S1_REALM_NSTABLE = ("AArch64.S1NextWalkStateTable: NSTable has no effect outside a Secure "
                        "walk; a Realm walk stays in the Realm PA space")
    S1_REALM_OUTPUT_PASPACE = ("AArch64.S1NextWalkStateLeaf: a Realm EL2 or EL2&0 leaf's NS "
                               "selects the Non-secure PA space, else Realm; the Realm EL1&0 "
                               "output is Realm")
    S1_REALM_FETCH = ("AArch64.S1DirectBasePermissions, S1IndirectBasePermissions: no instruction "
                      "fetch by Realm EL2 or EL2&0 from a non-Realm PA space (FEAT_RME)")
    S1_WRITABLE_CLEAN = "D8.5 R_RKMHW: DBM with TCR.HD, writable-clean counts as writable"
    S1_DCACHE_DISABLED = "AArch64.S1DCacheEnabled: SCTLR_ELx.C == 0, Normal is Non-cacheable"

    # AArch64.S1DirectBasePermissions, D8.4
    PERM_EL0_SINGLE_PRIVILEGE = "D8.4.1.2.1 R_CBNKR: no EL0 access in a single-privilege regime"
    PERM_AP_NO_UNPRIV = "D8.4.1.2.1 R_RNGJG: AP[2:1] gives no EL0 access"
    PERM_APTABLE_NO_UNPRIV = "D8.4.1.2 R_YTXKB: APTable removes EL0 access"
    PERM_PAN = "D8.4.5 R_XTSQH: PSTATE.PAN, page accessible at EL0 (AT S1E1RP/WP)"
    PERM_PAN3 = "D8.4.5 R_ZGCNT: PSTATE.PAN and EPAN, page executable at EL0 (FEAT_PAN3)"
    FETCH_XN = "D8.4.1.3: instruction fetch from an execute-never location"
    FETCH_WXN = "D8.4.1.4 R_SYMMB: instruction fetch, SCTLR_ELx.WXN and writable"
    PERM_AP_READ_ONLY = "D8.4.1.2.1: AP[2:1] read-only"
    PERM_AP_READ_ONLY_SINGLE = "D8.4.1.2.1 R_CBNKR: AP[2] == 1 read-only, single privilege"
    PERM_APTABLE_NO_PRIV_WRITE = "D8.4.1.2 R_YTXKB: APTable removes privileged write"

    # FEAT_S1PIE, FEAT_AIE: AArch64.S1ApplyOutputPerms, S1IndirectBasePermissions,
    # S1CheckPermissions, S1AttrDecode (D8.4, D8.6)
    S1_PIE = ("AArch64.S1ApplyOutputPerms: TCR2_ELx.PIE == 1, permissions from PIR_ELx/"
              "PIRE0_ELx by the PIIndex")
    PERM_PI_NO_READ = "D8.4 R_LLZDZ: the PIR/PIRE0 entry gives no read permission"
    PERM_PI_NO_WRITE = "D8.4 R_LLZDZ: the PIR/PIRE0 entry gives no write permission"
    PERM_PI_PX_UW = "D8.4 R_VFPJF: privileged execute with unprivileged write removes all"
    PERM_PI_PAN = ("AArch64.S1IndirectBasePermissions: PSTATE.PAN with a PIRE0 entry other "
                   "than 0b0000 (AT S1E1RP/WP)")
    PERM_PI_NDIRTY = ("AArch64.S1CheckPermissions: write with nDirty == 1 and no hardware "
                      "dirty state (FEAT_S1PIE)")
    FETCH_PI_WXN = "D8.4 R_HJYGR: instruction fetch, PIR/PIRE0 entry 0b0110 and writable"
    S1_ATTR_MAIR2 = "AArch64.S1Walk: TCR2_ELx.AIE == 1, AttrIndx[3] == 1 selects MAIR2_ELx"

    # AArch64.S2Translate, AArch64.S2Walk (D8.2, D8.3, D8.4.2)
    S2_CONFIG_FAULT = "AArch64.S2Walk: VTCR_EL2 configuration invalid, level 0 fault"
    S2_IPA_OUT_OF_RANGE = "AArch64.IPAIsOutOfRange: IPA above the stage 2 input size"
    S2_START = "AArch64.S2StartLevel: stage 2 walk started"
    SS2_SECURE_IPA = ("AArch64.SS2TTWParams, AArch64.S2Walk: a Secure IPA, VSTTBR_EL2 and "
                      "VSTCR_EL2.{T0SZ, SL0, TG0}; tables and output in the PA space "
                      "VSTCR_EL2.{SW, SA} select")
    SS2_NONSECURE_IPA = ("AArch64.SS2TTWParams, AArch64.S2Walk: a Non-secure IPA in the Secure "
                         "state, VTTBR_EL2 and VTCR_EL2; tables and output in the PA space "
                         "VTCR_EL2.{NSW, NSA} and VSTCR_EL2.{SW, SA} select")
    RLS2_REALM = ("AArch64.RLS2TTWParams, AArch64.S2InitialTTWState: Realm stage 2, VTTBR_EL2 "
                  "and VTCR_EL2 (NSW, NSA without effect), tables in the Realm PA space")
    S2_REALM_OUTPUT_PASPACE = ("AArch64.S2NextWalkStateLeaf: in the Realm state the stage 2 "
                               "descriptor's NS (bit 55) selects the Non-secure PA space, else "
                               "Realm")
    S2_REALM_WALK_NONREALM = ("AArch64.S2CheckPermissions: a Realm stage 1 table access that "
                              "stage 2 maps outside the Realm PA space is a Permission fault")
    S2_BASE_ADDRESS_SIZE = "AArch64.S2Walk: VTTBR_EL2 base above the OA size"
    S2_EXTERNAL_ABORT = "FetchDescriptor: stage 2 descriptor read has no memory"
    S2_TABLE = "AArch64.DecodeDescriptorType: stage 2 table descriptor"
    S2_BLOCK = "AArch64.DecodeDescriptorType: stage 2 block descriptor"
    S2_PAGE = "AArch64.DecodeDescriptorType: stage 2 page descriptor"
    S2_NEXT_TABLE_ADDRESS_SIZE = "AArch64.S2Walk: next-level table above the OA size"
    S2_INVALID = "AArch64.DecodeDescriptorType: stage 2 descriptor bit[0] == 0"
    S2_BLOCK_NOT_SUPPORTED = "AArch64.BlockDescSupported: stage 2 block not allowed at the level"
    S2_OUTPUT_ADDRESS_SIZE = "AArch64.S2Walk: output address above the OA size"
    S2_ACCESS_FLAG = "AArch64.S2Walk: AF == 0 with VTCR_EL2.HA == 0, Access flag fault"
    S2_PTW_DEVICE = "AArch64.S2CheckPermissions: stage 1 walk to Device with HCR_EL2.PTW"
    S2_NO_READ = "D8.4.2.1.1 R_FQNDX: S2AP gives no read permission"
    S2_NO_WRITE = "D8.4.2.1.1 R_FQNDX: S2AP gives no write permission"
    S2PIE_NO_READ = ("D8.4.2.2.1 R_CYQGN, AArch64.S2IndirectBasePermissions: S2BasePerm "
                     "gives no read (MMURead for a walk)")
    S2PIE_NO_WRITE = ("D8.4.2.2.1 R_CYQGN, AArch64.S2IndirectBasePermissions: S2BasePerm "
                      "gives no write (MMUWrite for a walk's update)")
    S2PIE_DIRTY = ("AArch64.S2CheckPermissions: write with S2PIE, VTCR_EL2.HD == 0 and "
                   "S2Dirty (descriptor bit 7) == 0, PAR.DirtyBit")
    S2_FWB = "AArch64.S2ApplyFWBMemAttrs: HCR_EL2.FWB == 1, stage 2 MemAttr decides the type"

    # FEAT_RME granule protection checks: AArch64.GranuleProtectionCheck,
    # AArch64.GPTWalk, GPICheck (D9), and how AArch64.AT reports them
    GPC_CONFIG_INVALID = ("GPCRegistersConsistent: reserved GPCCR_EL3 encoding, GPT walk "
                          "fault at level 0")
    GPC_ABOVE_PPS_NONSECURE = ("AArch64.GranuleProtectionCheck: PA above GPCCR_EL3.PPS in the "
                               "Non-secure PA space is permitted")
    GPC_ABOVE_PPS = ("AArch64.GranuleProtectionCheck: PA above GPCCR_EL3.PPS outside the "
                     "Non-secure PA space, granule protection fault at level 0")
    GPT_BASE_ADDRESS_SIZE = "AArch64.GranuleProtectionCheck: GPTBR_EL3 above the PPS"
    GPT_EXTERNAL_ABORT = "AArch64.GPTWalk: GPT descriptor fetch has no memory (GPCF_EABT)"
    GPT_L0_BLOCK = "AArch64.GPTWalk: level 0 Block descriptor gives the GPI"
    GPT_L0_TABLE = "AArch64.GPTWalk: level 0 Table descriptor"
    GPT_L0_INVALID = "AArch64.GPTWalk: invalid level 0 GPT descriptor (GPCF_Walk)"
    GPT_L1_CONTIGUOUS = "AArch64.GPTWalk: level 1 Contiguous descriptor gives the GPI"
    GPT_L1_GRANULES = "AArch64.GPTWalk: level 1 Granules descriptor, GPI by PA[pgs+3:pgs]"
    GPT_L1_INVALID = "AArch64.GPTWalk: invalid level 1 GPT descriptor or reserved GPI (GPCF_Walk)"
    GPC_GPI_PERMITS = "GPICheck: the GPI permits the access's PA space"
    GPC_GPI_DENIES = "GPICheck: the GPI does not permit the PA space, granule protection fault"
    AT_GPC_ON_WALK = ("AArch64.FetchDescriptor: GPC fault on a translation table walk access "
                      "(Fault_GPCFOnWalk), reported in PAR_EL1")
    AT_GPC_EXCEPTION = ("AArch64.AT: a GPC fault ReportAsGPCException (or HCR_EL2.GPF at EL1) "
                        "is taken as an exception, not reported in PAR_EL1")
    AT_NO_OUTPUT_GPC = ("AArch64.AT: the output address is not granule protection checked "
                        "(no AArch64.TranslateAddress, so no Fault_GPCFOnOutput)")

DESCRIPTOR_RULES = {
    (1, "table"): Rule.S1_TABLE, (1, "block"): Rule.S1_BLOCK, (1, "page"): Rule.S1_PAGE,
    (2, "table"): Rule.S2_TABLE, (2, "block"): Rule.S2_BLOCK, (2, "page"): Rule.S2_PAGE,
}
"""The rule a descriptor step cites, by stage and decoded type (the invalid
types are cited by the fault that follows)."""
