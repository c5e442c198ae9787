"""Stage 1 and stage 2 translation: table walks, their checks, the output.

Arm ARM DDI 0487, chapter D8 and the ASL of J1.1.4: AArch64.S1Translate,
AArch64.S1Walk, AArch64.S1DisabledOutput, AArch64.S2Translate,
AArch64.S2Walk, AArch64.DecodeDescriptorType, AArch64.BlockDescSupported,
AArch64.NextTableBase, AArch64.S1LeafBase / S2LeafBase,
AArch64.S1ApplyTablePerms, AArch64.S1ApplyOutputPerms,
AArch64.S2ApplyOutputPerms. Faults are returned as FaultRecord values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from xcheck.arch import attrs, indirect, perms
from xcheck.arch.attrs import MemAttrs
from xcheck.arch.descupdate import AF_BIT, S2_DIRTY_BIT, PermittedUpdate
from xcheck.arch.fault import Fault, FaultRecord
from xcheck.arch.gpc import GpcFault, PASpace, granule_protection_check
from xcheck.arch.memory import PhysMem
from xcheck.arch.regime import Regime
from xcheck.arch.rules import DESCRIPTOR_RULES, Rule
from xcheck.arch.trace import TraceStep
from xcheck.arch.walkparams import S1RegimeParams, S2TTWParams

ADDR48 = (1 << 48) - 1
ADDR56 = (1 << 56) - 1

_NO_S1_ATTRS = MemAttrs(0, 0)
"""The attributes of a stage 2 output no stage 1 attributes enter (a stage 1
table address: only the address is used)."""
_S1_DCACHE_OFF_ATTRS = MemAttrs(attr=0x44, sh=0b10)
"""Normal Non-cacheable, Outer Shareable: Normal memory with SCTLR_ELx.C == 0."""

_new = tuple.__new__
"""Makes the step of each descriptor fetch (a NamedTuple's own __new__ is
Python code, and a walk makes one such step a level)."""


@dataclass(frozen=True, slots=True)
class Access:
    """The access an AT makes (AccessDescriptor for AccessType_AT)."""

    s1: perms.S1Access
    write: bool
    pstate_pan: bool
    pan_feature: int


class Translated(NamedTuple):
    """The output of a stage: address (IPA or PA), attributes, final level
    (a NamedTuple: every walk makes one)."""

    address: int
    attrs: MemAttrs
    level: int
    descriptor_attrs: MemAttrs | None = None
    """The attributes as the descriptor and MAIR give them, when a
    configuration bit (SCTLR_ELx.C) changed them: D24.2 PAR_EL1.ATTR "can be
    the resulting attribute ... instead of the value that appears in the
    translation table descriptor", so PAR may report either."""
    af_update: int | None = None
    """The stage 1 descriptor's (IPA) address when AF == 0 with TCR.HA == 1:
    an AT is permitted to set AF there (D8.5), a write that stage 2 translates
    as a table walk access and that can fault (AArch64.S1Translate,
    CreateAccDescTTEUpdate)."""
    ns: bool = True
    """The output is in the Non-secure PA space (always, from a Non-secure
    regime; from a Secure one as NSTable and NS say: AArch64.S1Walk)."""
    nse: bool = False
    """With ``ns``, the output PA space of the Root state's EL3 regime:
    {NSE, NS} = 00 Secure, 01 Non-secure, 10 Root, 11 Realm (DecodePASpace)."""
    leaf_ns: bool = True
    """The leaf descriptor was read in the Non-secure (IPA) space: a Secure
    regime's walk is Secure until a table descriptor's NSTable == 1."""

    @property
    def paspace(self) -> PASpace:
        """The output PA space, {NSE, NS} as DecodePASpace reads them."""
        return _PASPACES[self.nse << 1 | self.ns]


_PASPACES = (PASpace.SECURE, PASpace.NONSECURE, PASpace.ROOT, PASpace.REALM)


Updates = list[PermittedUpdate] | None
"""Where a walk records the descriptor updates it permits (None: nowhere)."""


def _permit(updates: Updates, pa: int, bits: int, ee: bool, why: str,
            trace: list[TraceStep], stage: int) -> None:
    """Record that the AT may set ``bits`` (descriptor order) of the word at ``pa``."""
    if updates is None:
        return
    updates.append(PermittedUpdate(pa, _bswap(bits) if ee else bits, why))
    trace.append(TraceStep(stage, "may update", f"0x{pa:x}: {why}"))


@lru_cache(maxsize=8192)
def _s1_permission(two: bool, ap: int, uxn: bool, pxn: bool, ap_table: int, xn_u: bool,
                   xn_p: bool, acc: perms.S1Access, pstate_pan: bool, epan: bool, wxn: bool,
                   pan_feature: int) -> perms.Denied | None:
    """perms.s1_permission_fault, memoized on its (few) distinct inputs."""
    return perms.s1_permission_fault(
        two, perms.S1LeafPerms(ap=ap, uxn=uxn, pxn=pxn),
        perms.TablePerms(ap_table=ap_table, uxn_table=xn_u, pxn_table=xn_p),
        acc, pstate_pan, epan, wxn, pan_feature)


_s1_indirect = lru_cache(maxsize=8192)(indirect.s1_indirect_permission_fault)
_s1_attrs = lru_cache(maxsize=8192)(attrs.s1_attrs)


def block_supported(granule_bits: int, ds: bool, pa52_64k: bool, level: int) -> bool:
    """AArch64.BlockDescSupported (D8.3): 4KB blocks at levels 1, 2 (0 with
    DS); 16KB at level 2 (1 with DS); 64KB at level 2 (1 with 52-bit PAs)."""
    if granule_bits == 12:
        return level in (1, 2) or (level == 0 and ds)
    if granule_bits == 14:
        return level == 2 or (level == 1 and ds)
    return level == 2 or (level == 1 and pa52_64k)


def output_address(desc: int, align_bits: int, ds: bool, pa52_64k: bool) -> int:
    """AArch64.NextTableBase / S1LeafBase / S2LeafBase: descriptor bits
    [47:align] plus OA[51:48] from bits [15:12] (64KB, PAMax >= 52) or from
    bits [9:8,49:48] (DS == 1)."""
    oa = desc & ADDR48 & ~((1 << align_bits) - 1)
    if pa52_64k:
        oa |= ((desc >> 12) & 0xF) << 48
    elif ds:
        oa |= (((desc >> 8) & 3) << 50) | (((desc >> 48) & 3) << 48)
    return oa


def _bswap(desc: int) -> int:
    return int.from_bytes(desc.to_bytes(8, "little"), "big")


def _kind(desc: int, level: int, granule_bits: int, ds: bool, pa52_64k: bool) -> str:
    """AArch64.DecodeDescriptorType."""
    if not desc & 1:
        return "invalid"
    if desc & 2:
        return "page" if level == 3 else "table"
    return "block" if block_supported(granule_bits, ds, pa52_64k, level) else "invalid block"


DescriptorTypes = tuple[tuple[tuple[str, Rule | None], ...], ...]


@lru_cache(maxsize=64)
def _descriptor_types(stage: int, granule_bits: int, ds: bool, pa52_64k: bool) -> DescriptorTypes:
    """AArch64.DecodeDescriptorType as a table, which depends on a
    descriptor only through bits [1:0]: per level (-1 to 3, at index level +
    1) and those bits, the type and the rule its fetch step cites (memoized:
    walks have few distinct parameters)."""
    return tuple(tuple((kind := _kind(bits, level, granule_bits, ds, pa52_64k),
                        DESCRIPTOR_RULES.get((stage, kind))) for bits in range(4))
                 for level in range(-1, 4))


def _s1_fault(status: Fault, level: int, acc: Access, rule: str,
              trace: list[TraceStep], cites: Rule) -> FaultRecord:
    trace.append(TraceStep(1, "fault", f"{status.value} fault, level {level}", None, None, None,
                           None, None, rule, cites))
    return FaultRecord(status, level, 1, False, acc.write, rule)


def _gpc_on_walk(gpf: GpcFault, level: int, stage: int, s2fs1walk: bool, write: bool,
                 trace: list[TraceStep]) -> FaultRecord:
    """AArch64.FetchDescriptor: a translation table access that fails its
    granule protection check is Fault_GPCFOnWalk at the walk's level, with
    the stage of the walk that read (D9.3; EncodeLDFSC 0b1001LL)."""
    rule = "AArch64.FetchDescriptor, Fault_GPCFOnWalk"
    trace.append(TraceStep(stage, "fault", f"granule protection fault on the walk, level {level}"
                           f" ({gpf.describe()})", rule=rule, cites=Rule.AT_GPC_ON_WALK))
    return FaultRecord(Fault.GPCF_ON_WALK, level, stage, s2fs1walk, write, rule, gpcf=gpf)


def _s1_disabled(rp: S1RegimeParams, va: int, acc: Access,
                 trace: list[TraceStep]) -> FaultRecord | Translated:
    """AArch64.S1DisabledOutput: VA = output address, checked against PAMax
    (Address size fault, level 0); data accesses are Device-nGnRnE, or Normal
    Write-Back Non-shareable with HCR_EL2.DC == 1 (D8.2.10, "Behavior when
    stage 1 address translation is disabled"). The PA space is the regime's
    own (Secure for a Secure regime, Realm for a Realm one)."""
    p = rp.params(va)
    trace.append(TraceStep(1, "disabled", f"stage 1 of the {rp.regime.value} regime is "
                           f"disabled ({rp.disabled_by}): output address = VA",
                           rule="AArch64.S1Enabled", cites=Rule.S1_DISABLED))
    top, pamax = p.addrtop, rp.pamax
    if (va >> pamax) & ((1 << (top + 1 - pamax)) - 1):
        return _s1_fault(Fault.ADDRESS_SIZE, 0, acc, f"VA[{top}:{pamax}] != 0 with stage 1 "
                         "disabled (AArch64.S1DisabledOutput)", trace,
                         Rule.S1_DISABLED_ADDRESS_SIZE)
    return Translated(va & ADDR56, attrs.s1_disabled_attrs(rp.sctlr_c, rp.dc), 0,
                      ns=not (rp.secure or rp.root), nse=rp.root or rp.realm)


def s1_translate(rp: S1RegimeParams, va: int, acc: Access, s2: S2TTWParams | None,
                 mem: PhysMem, trace: list[TraceStep],
                 updates: Updates = None,
                 s2_secure: S2TTWParams | None = None) -> FaultRecord | Translated:
    """AArch64.S1Translate for an AT access. ``s2`` is given when stage 2
    translates the stage 1 table addresses (EL1&0 with HCR_EL2.{VM,DC} set);
    in the Secure state with Secure EL2 enabled ``s2_secure`` translates
    them while the walk is in the Secure IPA space (before any NSTable == 1),
    ``s2`` after (AArch64.S2Walk: VSTTBR_EL2 or VTTBR_EL2 by the IPA space).
    ``updates`` receives the descriptor updates the architecture permits
    (xcheck.arch.descupdate)."""
    if not rp.enabled:
        return _s1_disabled(rp, va, acc, trace)
    p = rp.params(va)
    two = rp.upper is not None  # HasUnprivileged(regime): it has two VA ranges
    for note in p.notes:
        trace.append(TraceStep(1, "config", note))
    if p.txsz_fault:
        return _s1_fault(Fault.TRANSLATION, 0, acc, "AArch64.S1TxSZFaults", trace,
                         Rule.S1_TXSZ_FAULT)
    top, iasize = p.addrtop, p.iasize
    high = (va >> iasize) & ((1 << (top + 1 - iasize)) - 1)
    upper = p.varange == "upper"
    if high != (((1 << (top + 1 - iasize)) - 1) if upper else 0):
        return _s1_fault(Fault.TRANSLATION, 0, acc, f"VA[{top}:{iasize}] not all "
                         f"{'ones' if upper else 'zeros'}: outside the "
                         f"{'TTBR1' if upper else 'TTBR0'} range (AArch64.VAIsOutOfRange)", trace,
                         Rule.S1_VA_OUT_OF_RANGE)
    if acc.s1.el == 0 and p.e0pd:
        return _s1_fault(Fault.TRANSLATION, 0, acc, f"TCR.E0PD{int(upper)} == 1 for an EL0 "
                         "access (AArch64.S1Translate, FEAT_E0PD)", trace, Rule.S1_E0PD)
    if two and p.epd:
        return _s1_fault(Fault.TRANSLATION, 0, acc, f"TCR.EPD{int(upper)} == 1: walks "
                         "disabled (AArch64.S1Walk)", trace, Rule.S1_EPD)
    g, ds, pa52 = p.granule_bits, p.ds, p.pa52_64k
    stride = g - 3
    level = p.start_level
    lsb = (3 - level) * stride + g
    table = p.base
    index = (va >> lsb) & ((1 << (iasize - lsb)) - 1)
    trace.append(TraceStep(1, "start", p, None, None, None, None, None, "AArch64.S1StartLevel",
                           Rule.S1_START))
    if (table | (index << 3)) >> p.oasize:
        return _s1_fault(Fault.ADDRESS_SIZE, 0, acc, f"table base 0x{table:x} above the "
                         f"{p.oasize}-bit OA size (AArch64.S1Walk, AArch64.S1OAOutOfRange)",
                         trace, Rule.S1_BASE_ADDRESS_SIZE)
    tables = 0  # the walk's table descriptors ORed: the union of APTable, UXNTable, PXNTable
    ns = not (rp.secure or rp.root or rp.realm)
    read64, ee, gpc, oasize = mem.read64, p.ee, rp.gpc, p.oasize
    types = _descriptor_types(1, g, ds, pa52)
    walk_s2 = s2
    while True:
        descaddr = table | (index << 3)
        pa = descaddr
        if s2 is not None:
            walk_s2 = s2 if ns or s2_secure is None else s2_secure
            out = s2_translate(walk_s2, descaddr, None, False, True, mem, trace, updates)
            if isinstance(out, FaultRecord):
                return out
            pa = out.address
        if gpc is not None:
            # a Realm walk through stage 2 reads only the Realm PA space: stage 2
            # faults any other output (s2_translate, AArch64.S2CheckPermissions)
            walk_space = (PASpace.ROOT if rp.root else PASpace.REALM if rp.realm
                          else PASpace.NONSECURE if ns else PASpace.SECURE)
            gpf = granule_protection_check(gpc, pa, walk_space, mem, trace, 1)
            if gpf is not None:
                return _gpc_on_walk(gpf, level, 1, False, acc.write, trace)
        desc = read64(pa)
        if desc is None:
            trace.append(TraceStep(1, "no memory", "", level, table, index, pa, None))
            return _s1_fault(Fault.EXTERNAL_ABORT_ON_WALK, level, acc, f"no memory at "
                             f"0x{pa:x} (FetchDescriptor, PhysMemRead)", trace,
                             Rule.S1_EXTERNAL_ABORT)
        if ee:
            desc = _bswap(desc)
        kind, cites = types[level + 1][desc & 3]
        trace.append(_new(TraceStep, (1, kind, "", level, table, index, pa, desc, "", cites)))
        if kind != "table":
            break
        table = output_address(desc, g, ds, pa52)
        tables |= desc
        if desc >> 63 and (rp.secure or rp.realm):
            _s1_nstable(rp.realm, ns, level, trace)
            ns = ns or rp.secure
        level += 1
        lsb -= stride
        index = (va >> lsb) & ((1 << stride) - 1)
        if table >> oasize:
            return _s1_fault(Fault.ADDRESS_SIZE, level - 1, acc, f"next-level table 0x{table:x}"
                             f" above the {oasize}-bit OA size (AArch64.S1Walk)", trace,
                             Rule.S1_NEXT_TABLE_ADDRESS_SIZE)
    if p.hpd or rp.pie:  # AArch64.S1Walk: no table permissions with HPD or PIE
        ap_table = xn_u = xn_p = 0
    elif two:
        ap_table, xn_u, xn_p = (tables >> 61) & 3, (tables >> 60) & 1, (tables >> 59) & 1
    else:
        ap_table, xn_u, xn_p = ((tables >> 62) & 1) << 1, 0, (tables >> 60) & 1
    if kind.startswith("invalid"):
        rule = ("block descriptor not allowed at this level (AArch64.BlockDescSupported)"
                if kind == "invalid block" else "descriptor bit[0] == 0")
        return _s1_fault(Fault.TRANSLATION, level, acc, rule, trace,
                         Rule.S1_BLOCK_NOT_SUPPORTED if kind == "invalid block"
                         else Rule.S1_INVALID)
    oa = output_address(desc, lsb, ds, pa52) | (va & ((1 << lsb) - 1))
    if oa >> p.oasize:
        return _s1_fault(Fault.ADDRESS_SIZE, level, acc, f"output address 0x{oa:x} above the "
                         f"{p.oasize}-bit OA size (AArch64.S1Walk)", trace,
                         Rule.S1_OUTPUT_ADDRESS_SIZE)
    if not (desc >> 10) & 1 and not p.ha:
        return _s1_fault(Fault.ACCESS_FLAG, level, acc, "AF == 0 and TCR.HA == 0 "
                         "(AArch64.S1Walk; D8.5)", trace, Rule.S1_ACCESS_FLAG)
    if not (desc >> 10) & 1:
        _permit_s1_af(p.ee, descaddr, pa, walk_s2, mem, trace, updates)
    denied = _s1_leaf_permission(rp, p.hd, desc, two, ap_table, bool(xn_u), bool(xn_p), acc,
                                 trace)
    if denied is not None:
        fault = _s1_fault(Fault.PERMISSION, level, acc, denied.why, trace, denied.rule)
        if not (desc >> 10) & 1:  # AF may still be set (_permit_s1_af)
            fault = fault._replace(af_update=descaddr, af_update_ns=ns)
        return fault
    nse = False
    if rp.root:
        # D8.4.6 Table D8-88: {NSE, NS} = 00 is Secure with FEAT_SEL2, else Non-secure.
        ns, nse = bool(desc >> 5 & 1), bool(desc >> 11 & 1)
        ns = ns or (not nse and not rp.root_secure)
        space = ("Secure", "Non-secure", "Root", "Realm")[nse << 1 | ns]
        trace.append(TraceStep(1, "PA space", f"{space} (NSE == {desc >> 11 & 1}, NS == "
                               f"{desc >> 5 & 1})", level,
                               rule="AArch64.S1Walk, DecodePASpace (D8.4.6, FEAT_RME)",
                               cites=Rule.S1_OUTPUT_PASPACE))
        if acc.s1.fetch and space != "Root":
            return _s1_fault(Fault.PERMISSION, level, acc, "an instruction fetch in the Root "
                             f"state from the {space} PA space (AArch64.S1ComputePermissions: "
                             "no execution from non-Root space by Root)", trace,
                             Rule.S1_ROOT_FETCH)
    if rp.realm:
        ns, nse = _realm_leaf_space(rp, desc, level, trace)
        if acc.s1.fetch and not nse and rp.regime is not Regime.EL10:
            return _s1_fault(Fault.PERMISSION, level, acc, "an instruction fetch by Realm "
                             f"{rp.regime.value} from the Non-secure PA space "
                             "(AArch64.S1DirectBasePermissions: x = 0 outside the Realm PA "
                             "space)", trace, Rule.S1_REALM_FETCH)
    sh = p.sh if ds else (desc >> 8) & 3
    attr_index = (desc >> 2) & 7
    mair = p.mair
    if p.aie and (desc >> 59) & 1:
        attr_index, mair = attr_index | 8, p.mair2
        trace.append(TraceStep(1, "attrs", f"AttrIndx = {attr_index} (bit 59 is AttrIndx[3] "
                               f"with TCR2_ELx.AIE == 1): MAIR2_ELx.Attr{attr_index - 8}",
                               rule="AArch64.S1Walk, FEAT_AIE", cites=Rule.S1_ATTR_MAIR2))
    mem_attrs = _s1_attrs(mair, attr_index & 7, sh)
    descriptor_attrs = None
    if not rp.sctlr_c and mem_attrs.attr >> 4:
        descriptor_attrs = mem_attrs
        # AArch64.S1Translate: with the stage 1 data cache disabled
        # (AArch64.S1DCacheEnabled, SCTLR_ELx.C == 0) Normal memory is Normal
        # Non-cacheable for data accesses.
        mem_attrs = _S1_DCACHE_OFF_ATTRS
        trace.append(TraceStep(1, "attrs", "SCTLR_ELx.C == 0: Normal memory treated as "
                               "Non-cacheable",
                               rule="AArch64.S1Translate, AArch64.S1DCacheEnabled",
                               cites=Rule.S1_DCACHE_DISABLED))
    af_update = descaddr if not (desc >> 10) & 1 else None
    leaf_ns = ns
    if rp.secure:
        why = "NS == 1" if desc >> 5 & 1 else ("NSTable == 1 above" if ns else "NS == 0")
        ns = ns or bool(desc >> 5 & 1)
        trace.append(TraceStep(1, "PA space", f"{'Non-secure' if ns else 'Secure'} ({why})",
                               level, rule="AArch64.S1Walk (D8.4.6 R_KZLVM, D8.4.6.1)",
                               cites=Rule.S1_OUTPUT_PASPACE))
    return Translated(oa, mem_attrs, level, descriptor_attrs, af_update, ns, nse, leaf_ns)


def _s1_nstable(realm: bool, ns: bool, level: int, trace: list[TraceStep]) -> None:
    """A table descriptor's NSTable == 1 (AArch64.S1NextWalkStateTable): in a
    Secure walk the next levels and the output move to the Non-secure PA
    space (once: ``ns`` says whether they are there already); in a Realm
    walk it has no effect."""
    if realm:
        trace.append(TraceStep(1, "NSTable", "NSTable == 1 has no effect in a Realm walk: "
                               "the next levels stay in the Realm PA space", level,
                               rule="AArch64.S1NextWalkStateTable",
                               cites=Rule.S1_REALM_NSTABLE))
    elif not ns:
        trace.append(TraceStep(1, "NSTable", "NSTable == 1: the next levels and the output "
                               "are in the Non-secure PA space", level,
                               rule="AArch64.S1Walk (D8.4.6.1)", cites=Rule.S1_NSTABLE))


def _realm_leaf_space(rp: S1RegimeParams, desc: int, level: int,
                      trace: list[TraceStep]) -> tuple[bool, bool]:
    """AArch64.S1NextWalkStateLeaf in the Realm state: (ns, nse) of the output.
    The Realm EL2 and EL2&0 regimes read the leaf's NS (bit 5): 1 is the
    Non-secure PA space, 0 Realm; the Realm EL1&0 regime's output (an IPA,
    which Realm stage 2 places) is Realm whatever NS says."""
    ns_bit = desc >> 5 & 1
    if rp.regime is Regime.EL10:
        why = f"Realm EL1&0: the output is in the Realm (IPA) space, NS ({ns_bit}) ignored"
        nonsecure = False
    else:
        nonsecure = bool(ns_bit)
        why = f"{'Non-secure' if nonsecure else 'Realm'} (NS == {ns_bit})"
    trace.append(TraceStep(1, "PA space", why, level, rule="AArch64.S1NextWalkStateLeaf",
                           cites=Rule.S1_REALM_OUTPUT_PASPACE))
    return True, not nonsecure


def _permit_s1_af(ee: bool, descaddr: int, pa: int, s2: S2TTWParams | None, mem: PhysMem,
                  trace: list[TraceStep], updates: Updates) -> None:
    """AF == 0 with TCR.HA == 1: the walk is permitted to set AF
    (AArch64.S1Translate: ``walkparams.ha == '1' &&
    AArch64.SettingAccessFlagPermitted(fault)``: no fault, or CONSTRAINED
    UNPREDICTABLE with the Permission fault that is the only fault left after
    this point). AT is not excluded from AF updates; it is from dirty state
    updates (R_ZYGHJ). The write goes through stage 2 as a table walk write
    (CreateAccDescTTEUpdate); when that faults no update is made."""
    if updates is None:
        return
    if s2 is not None:
        through: list[PermittedUpdate] = []
        out = s2_translate(s2, descaddr, None, True, True, mem, [], through)
        if isinstance(out, FaultRecord):
            return
        updates.extend(through)
    _permit(updates, pa, AF_BIT, ee, "AF == 0 with TCR.HA == 1: the AT may set AF "
            "(D8.5.2; AArch64.S1Translate, SettingAccessFlagPermitted)", trace, 1)


def _s1_leaf_permission(rp: S1RegimeParams, hw_dirty: bool, desc: int, two: bool,
                        ap_table: int, xn_u: bool, xn_p: bool, acc: Access,
                        trace: list[TraceStep]) -> perms.Denied | None:
    """The stage 1 permission check of the leaf ``desc``: Indirect
    (TCR2_ELx.PIE, xcheck.arch.indirect) or Direct with hierarchical
    control (xcheck.arch.perms); AArch64.S1ApplyOutputPerms,
    AArch64.S1CheckPermissions."""
    if rp.pie:
        index = indirect.pi_index(desc)
        ppi, upi = indirect.pi_entry(rp.pir, index), indirect.pi_entry(rp.pire0, index)
        trace.append(TraceStep(1, "indirect", f"PIIndex {index} (UXN:PXN:DBM:AP[1]): PIR "
                               f"0b{ppi:04b} ({indirect.PI_NAMES[ppi]})"
                               + (f", PIRE0 0b{upi:04b} ({indirect.PI_NAMES[upi]})" if two
                                  else "") + f", nDirty {(desc >> 7) & 1}",
                               rule="AArch64.S1ApplyOutputPerms", cites=Rule.S1_PIE))
        return _s1_indirect(two, ppi, upi, acc.s1, acc.pstate_pan, acc.pan_feature,
                            bool((desc >> 7) & 1), hw_dirty)
    if two:
        ap, uxn, pxn = (desc >> 6) & 3, bool((desc >> 54) & 1), bool((desc >> 53) & 1)
    else:
        ap, uxn, pxn = (((desc >> 7) & 1) << 1) | 1, False, bool((desc >> 54) & 1)
    if hw_dirty and (desc >> 51) & 1 and ap & 2:
        # R_RKMHW: an AT write to a writable-clean descriptor with hardware
        # dirty state management is permitted (and never updates it, R_ZYGHJ).
        ap &= 1
        trace.append(TraceStep(1, "dirty", "DBM == 1 with TCR.HD == 1: writable-clean, "
                               "AP[2] treated as 0", rule="D8.5 R_RKMHW",
                               cites=Rule.S1_WRITABLE_CLEAN))
    return _s1_permission(two, ap, uxn, pxn, ap_table, xn_u, xn_p, acc.s1,
                          acc.pstate_pan, rp.epan, rp.wxn, acc.pan_feature)


def _s2_fault(status: Fault, level: int, ttw: bool, write: bool, rule: str,
              trace: list[TraceStep], cites: Rule) -> FaultRecord:
    trace.append(TraceStep(2, "fault", f"{status.value} fault, level {level}"
                           + (" (stage 1 table walk)" if ttw else ""), None, None, None, None,
                           None, rule, cites))
    return FaultRecord(status, level, 2, ttw, write, rule)


def s2_translate(p: S2TTWParams, ipa: int, s1_attrs: MemAttrs | None, write: bool, ttw: bool,
                 mem: PhysMem, trace: list[TraceStep],
                 updates: Updates = None) -> FaultRecord | Translated:
    """AArch64.S2Translate of ``ipa``: a stage 1 table access (``ttw``, a
    read, or with ``write`` the Access flag update of a stage 1 descriptor;
    fault reported with PAR.PTW == 1) or the stage 1 output (attributes
    combined with ``s1_attrs``). ``updates`` as for s1_translate."""
    if not p.enabled:
        return Translated(ipa, s1_attrs if s1_attrs is not None else _NO_S1_ATTRS, 0,
                          nse=p.realm)
    what = "stage 1 table address" if ttw else "IPA"
    if p.config_fault:
        return _s2_fault(Fault.TRANSLATION, 0, ttw, write, p.config_fault, trace,
                         Rule.S2_CONFIG_FAULT)
    if ipa >> p.iasize:
        return _s2_fault(Fault.TRANSLATION, 0, ttw, write, f"{what} 0x{ipa:x} above the "
                         f"{p.iasize}-bit IPA space (AArch64.IPAIsOutOfRange)", trace,
                         Rule.S2_IPA_OUT_OF_RANGE)
    g, ds, pa52 = p.granule_bits, p.ds, p.pa52_64k
    stride = g - 3
    level = p.start_level
    lsb = (3 - level) * stride + g
    table = p.base
    index = (ipa >> lsb) & ((1 << (p.iasize - lsb)) - 1)
    if p.realm:
        trace.append(TraceStep(2, "IPA space", "Realm stage 2: VTTBR_EL2 and VTCR_EL2 (NSW, NSA "
                               "without effect), tables in the Realm PA space",
                               rule="AArch64.RLS2TTWParams, AArch64.S2InitialTTWState",
                               cites=Rule.RLS2_REALM))
    if p.space_why:
        secure_ipa = p.ttbr_name == "VSTTBR_EL2"
        trace.append(TraceStep(2, "IPA space", f"{'Secure' if secure_ipa else 'Non-secure'} "
                               f"IPA: {p.ttbr_name}; tables in the "
                               f"{'Non-secure' if p.walk_ns else 'Secure'} PA space, output in "
                               f"the {'Non-secure' if p.out_ns else 'Secure'} PA space "
                               f"({p.space_why})",
                               rule="AArch64.SS2TTWParams, AArch64.SS2InitialTTWState, "
                                    "AArch64.SS2OutputPASpace",
                               cites=Rule.SS2_SECURE_IPA if secure_ipa else Rule.SS2_NONSECURE_IPA))
    trace.append(TraceStep(2, "start", f"{what} 0x{ipa:x}: {1 << (g - 10)}KB granule, "
                           f"T0SZ={p.txsz}, start level {level}"
                           + (f", {index >> stride} concatenated tables" if index >> stride
                              else ""), rule="AArch64.S2StartLevel", cites=Rule.S2_START))
    if (table | (index << 3)) >> p.oasize:
        return _s2_fault(Fault.ADDRESS_SIZE, 0, ttw, write, f"{p.ttbr_name} base 0x{table:x} above "
                         f"the {p.oasize}-bit OA size (AArch64.S2Walk)", trace,
                         Rule.S2_BASE_ADDRESS_SIZE)
    types = _descriptor_types(2, g, ds, pa52)
    while True:
        descaddr = table | (index << 3)
        if p.gpc is not None:
            space = (PASpace.REALM if p.realm else PASpace.NONSECURE if p.walk_ns
                     else PASpace.SECURE)
            gpf = granule_protection_check(p.gpc, descaddr, space, mem, trace, 2)
            if gpf is not None:
                return _gpc_on_walk(gpf, level, 2, ttw, write, trace)
        desc = mem.read64(descaddr)
        if desc is None:
            trace.append(TraceStep(2, "no memory", "", level, table, index, descaddr, None))
            return _s2_fault(Fault.EXTERNAL_ABORT_ON_WALK, level, ttw, write,
                             f"no memory at 0x{descaddr:x} (FetchDescriptor)", trace,
                             Rule.S2_EXTERNAL_ABORT)
        if p.ee:
            desc = _bswap(desc)
        kind, cites = types[level + 1][desc & 3]
        trace.append(_new(TraceStep, (2, kind, "", level, table, index, descaddr, desc, "",
                                      cites)))
        if kind != "table":
            break
        table = output_address(desc, g, ds, pa52)
        level += 1
        lsb -= stride
        index = (ipa >> lsb) & ((1 << stride) - 1)
        if table >> p.oasize:
            return _s2_fault(Fault.ADDRESS_SIZE, level - 1, ttw, write, f"next-level table "
                             f"0x{table:x} above the {p.oasize}-bit OA size (AArch64.S2Walk)",
                             trace, Rule.S2_NEXT_TABLE_ADDRESS_SIZE)
    if kind.startswith("invalid"):
        rule = ("block descriptor not allowed at this level (AArch64.BlockDescSupported)"
                if kind == "invalid block" else "descriptor bit[0] == 0")
        return _s2_fault(Fault.TRANSLATION, level, ttw, write, rule, trace,
                         Rule.S2_BLOCK_NOT_SUPPORTED if kind == "invalid block"
                         else Rule.S2_INVALID)
    oa = output_address(desc, lsb, ds, pa52) | (ipa & ((1 << lsb) - 1))
    if oa >> p.oasize:
        return _s2_fault(Fault.ADDRESS_SIZE, level, ttw, write, f"output address 0x{oa:x} "
                         f"above the {p.oasize}-bit OA size (AArch64.S2Walk)", trace,
                         Rule.S2_OUTPUT_ADDRESS_SIZE)
    if not (desc >> 10) & 1 and not p.ha:
        return _s2_fault(Fault.ACCESS_FLAG, level, ttw, write, "AF == 0 and VTCR_EL2.HA == 0 "
                         "(AArch64.S2Walk)", trace, Rule.S2_ACCESS_FLAG)
    if not (desc >> 10) & 1:
        _permit(updates, descaddr, AF_BIT, p.ee, "AF == 0 with VTCR_EL2.HA == 1: the walk may "
                "set AF (AArch64.S2Translate, SettingAccessFlagPermitted)", trace, 2)
    if (write and ttw and not p.s2pie and p.hd and (desc >> 51) & 1
            and not (desc >> 6) & 2):
        # the update of a stage 1 descriptor is a write that is not an AT
        # (CreateAccDescTTEUpdate), so it may set the stage 2 dirty state
        _permit(updates, descaddr, S2_DIRTY_BIT, p.ee, "DBM == 1 with VTCR_EL2.HD == 1: the "
                "Access flag write to a stage 1 descriptor may set S2AP[1] (AArch64.S2Translate,"
                " SettingDirtyStatePermitted; the acctype is TTW, not AT)", trace, 2)
    memattr = (desc >> 2) & 0xF
    out_ns, nse = p.out_ns, False
    if p.realm:
        out_ns, nse = True, not desc >> 55 & 1
        trace.append(TraceStep(2, "PA space", f"{'Realm' if nse else 'Non-secure'} (NS == "
                               f"{desc >> 55 & 1}, bit 55)", level,
                               rule="AArch64.S2NextWalkStateLeaf",
                               cites=Rule.S2_REALM_OUTPUT_PASPACE))
    if ttw:
        device = not memattr & 4 if p.fwb else not memattr & 0xC
        if p.ptw and device:
            return _s2_fault(Fault.PERMISSION, level, ttw, False, "stage 1 walk to stage 2 "
                             "Device memory with HCR_EL2.PTW == 1 (AArch64.S2CheckPermissions)",
                             trace, Rule.S2_PTW_DEVICE)
        if p.realm and not nse:
            return _s2_fault(Fault.PERMISSION, level, ttw, write, "a Realm stage 1 walk access "
                             "that stage 2 maps to the Non-secure PA space "
                             "(AArch64.S2CheckPermissions)", trace, Rule.S2_REALM_WALK_NONREALM)
    # a walk reads; an Access flag update (CreateAccDescTTEUpdate) writes
    if p.s2pie:
        index = perms.s2_pi_index(desc)
        denied = perms.s2_indirect_permission_fault((p.s2pir >> (4 * index)) & 0xF,
                                                    bool((desc >> 7) & 1), write, ttw, p.hd)
        if denied is not None:
            denied = denied._replace(why=f"PIIndex {index}: {denied.why}")
    else:
        s2ap = (desc >> 6) & 3
        if p.hd and (desc >> 51) & 1:
            s2ap |= 2  # AArch64.S2DirectBasePermissions: DBM with VTCR_EL2.HD grants write
        denied = perms.s2_permission_fault(s2ap, write)
    if denied is not None:
        fault = _s2_fault(Fault.PERMISSION, level, ttw, write and not ttw, denied.why, trace,
                          denied.rule)
        return fault._replace(dirtybit=True) if denied.rule is Rule.S2PIE_DIRTY else fault
    if s1_attrs is None:
        return Translated(oa, _NO_S1_ATTRS, level, ns=out_ns, nse=nse)
    sh = p.sh if ds else (desc >> 8) & 3
    if p.fwb:
        trace.append(TraceStep(2, "fwb", f"HCR_EL2.FWB == 1: stage 2 MemAttr 0b{memattr:04b} "
                               "decides the memory type", rule="AArch64.S2ApplyFWBMemAttrs",
                               cites=Rule.S2_FWB))
    return Translated(oa, attrs.s2_combine(s1_attrs, memattr, sh, p.fwb), level, ns=out_ns,
                      nse=nse)
