"""Generate (or load) a believable community in the registry's YAML import format.

Deterministic for a given seed. Grid codes follow Beijing DB11: 6-digit county (GB/T 2260)
+ 3 street + 3 community + 3 grid sequence. The hierarchy is the registry's: grid → building
→ unit → household → resident, plus each grid's shared places (one entrance and one fire exit
per building, a parking lot with its spaces, a fire lane). Devices: an SOS button and a door
sensor for every elder on the care list, door sensors on every entrance and fire exit, parking
sensors on every space and on the fire lane. Each device belongs to a message *family*
(Zigbee2MQTT, The Things Stack v3, ChirpStack v4, Tasmota, Linli native) drawn from a
deterministic mix, with a model the hub has a decoder profile for.

The roster staggers shifts (错时轮班) so every grid has a grid worker on duty around the clock:
a day worker (08:00–20:00), a night worker (20:00–08:00) and a middle worker (12:00–24:00, so
that in the afternoon and evening a *next* worker exists for SOS escalation), a grid leader on
office hours, a community duty officer and a command-centre supervisor around the clock.

The simulator and the hub share this one file; the family of a device is not part of the
registry format, so :func:`load` infers it from the device's id and model.
"""

from __future__ import annotations

import gc
import random
import uuid
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from simulators.types import FAMILY_ALIASES, Family

_SAFE_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = ["秀英", "桂兰", "玉兰", "建国", "淑珍", "志强", "凤英", "国华", "德明", "丽华", "海燕", "文斌"]
RELATIONS = ("女儿", "儿子", "侄女", "邻居")

KINDS = ("sos_button", "door_sensor", "parking_sensor")
#: The default share of each family among devices (a device kind a family cannot serve is
#: drawn again among the families that can).
DEFAULT_MIX: Mapping[Family, float] = {
    Family.ZIGBEE2MQTT: 0.55,
    Family.TTN_V3: 0.15,
    Family.CHIRPSTACK_V4: 0.1,
    Family.TASMOTA: 0.1,
    Family.NATIVE: 0.1,
}
#: Which kinds each family carries here (Tasmota: switch inputs wired to door reeds only).
FAMILY_KINDS: Mapping[Family, frozenset[str]] = {
    Family.ZIGBEE2MQTT: frozenset(KINDS),
    Family.TTN_V3: frozenset(KINDS),
    Family.CHIRPSTACK_V4: frozenset(KINDS),
    Family.TASMOTA: frozenset({"door_sensor"}),
    Family.NATIVE: frozenset(KINDS),
}
#: Seconds between heartbeats per family (Tasmota's TelePeriod defaults to 300 s).
HEARTBEAT_S: Mapping[Family, float] = {
    Family.ZIGBEE2MQTT: 3600.0,
    Family.TTN_V3: 10800.0,
    Family.CHIRPSTACK_V4: 10800.0,
    Family.TASMOTA: 300.0,
    Family.NATIVE: 900.0,
}
LORA_MODELS = {
    "sos_button": "Milesight WS101",
    "door_sensor": "Milesight WS301",
    "parking_sensor": "Bosch TPS110",
}
NATIVE_MODELS = {
    "sos_button": "Linli two-key pendant",
    "door_sensor": "Linli door contact",
    "parking_sensor": "Linli parking sensor",
}
TASMOTA_DOOR_MODEL = "tasmota-switch-open-on"
#: A water-leak sensor on The Things Stack (profile milesight-ws303).
LEAK_MODEL = "Milesight WS303"
#: The home-safety kit of ``safety_devices`` households: kind → (family, model). Fixed
#: families (not the format mix) so each path (Zigbee2MQTT exposes, a LoRaWAN profile, native)
#: is exercised by the scenarios.
SAFETY_KIT: tuple[tuple[str, Family, str], ...] = (
    ("smoke_detector", Family.ZIGBEE2MQTT, "JTYJ-GD-01LM/BW"),
    ("gas_detector", Family.ZIGBEE2MQTT, "JT-BZ-01AQ/A"),
    ("water_leak_sensor", Family.TTN_V3, LEAK_MODEL),
    ("motion_sensor", Family.ZIGBEE2MQTT, "RTCGQ11LM"),
    ("fall_detector", Family.NATIVE, "Linli fall detector"),
)
#: Zigbee models that report ``tamper`` (IAS zone devices).
Z2M_TAMPER_MODELS = frozenset({"HS1DS", "HS1EB"})
ZONE = "Asia/Shanghai"


@dataclass(frozen=True, slots=True)
class SimDevice:
    """A simulated device: its id, role, model, message family and where it is installed."""

    id: str
    kind: str
    model: str
    grid: str
    sos_action: str = "emergency"
    _: KW_ONLY
    family: Family = Family.ZIGBEE2MQTT
    heartbeat_s: float = 3600.0
    location: str = ""
    place: str | None = None
    place_kind: str | None = None
    household: str | None = None
    resident: str | None = None
    living_alone: bool = False
    #: A second, green key (求助) for service requests.
    green_key: bool = False
    #: The gateway it reports through (a Zigbee coordinator, a LoRaWAN gateway, a Wi-Fi node).
    gateway: str = ""
    #: Its community's own root for its family (the registry's ``sources``); "" = the default.
    base_topic: str = ""

    @property
    def community(self) -> str:
        return self.grid[:12]

    @property
    def tamper_capable(self) -> bool:
        if self.family is Family.ZIGBEE2MQTT:
            return self.model in Z2M_TAMPER_MODELS
        if self.family in (Family.TTN_V3, Family.CHIRPSTACK_V4):
            return self.model == LORA_MODELS["door_sensor"]
        return self.family is Family.NATIVE

    @property
    def battery_powered(self) -> bool:
        return self.family is not Family.TASMOTA


@dataclass(frozen=True, slots=True)
class SimCommunity:
    document: dict[str, Any]
    devices: tuple[SimDevice, ...]

    def write(self, path: Path, *, as_json: bool = False) -> None:
        """The registry file; ``as_json`` writes it as JSON (which is YAML), for very large communities.

        At 100 000 devices YAML takes about a minute to write and two to read back; JSON, which
        the hub's import reads with a JSON parser when it is one, takes well under a second.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "# Generated by linli's community simulator; the hub's registry import format.\n"
        if as_json:
            path.write_bytes(text.encode() + orjson.dumps(self.document, option=orjson.OPT_INDENT_2) + b"\n")
            return
        # libyaml's emitter when present, and no cyclic collection while the node tree (10⁶
        # nodes at 100 000 devices) is built: each full collection would walk all of it.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            body = yaml.dump(self.document, Dumper=_SAFE_DUMPER, allow_unicode=True, sort_keys=False)
        finally:
            if was_enabled:
                gc.enable()
        path.write_text(text + body, encoding="utf-8")

    # -- lookups used by behaviour and scenarios -------------------------------------------------

    @property
    def communities(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.document["communities"]
        return result

    @property
    def code(self) -> str:
        return str(self.communities[0]["code"])

    def residents(self) -> list[dict[str, Any]]:
        return [r for c in self.communities for r in c.get("residents", [])]

    def people(self) -> list[dict[str, Any]]:
        return [p for c in self.communities for p in c.get("people", [])]

    def places(self) -> list[dict[str, Any]]:
        return [p for c in self.communities for g in c["grids"] for p in g.get("places", [])]

    def device(self, device_id: str) -> SimDevice | None:
        return next((d for d in self.devices if d.id == device_id), None)


def parse_mix(text: str | Mapping[str, float] | Mapping[Family, float] | None) -> dict[Family, float]:
    """``"z2m=0.6,ttn=0.2"`` (or a mapping) → normalised weights per family."""
    if text is None:
        return dict(DEFAULT_MIX)
    items: list[tuple[str, float]]
    if isinstance(text, str):
        items = []
        for part in text.split(","):
            if not part.strip():
                continue
            label, sep, number = part.partition("=")
            if not sep:
                raise ValueError(f"format mix entry {part!r} is not name=weight")
            try:
                items.append((label.strip(), float(number)))
            except ValueError:
                raise ValueError(f"format mix weight {number!r} is not a number") from None
    else:
        items = [(str(k), float(v)) for k, v in text.items()]
    mix: dict[Family, float] = {}
    for name, weight in items:
        family = FAMILY_ALIASES.get(name.lower())
        if family is None:
            raise ValueError(f"unknown family {name!r} in format mix (one of {sorted(FAMILY_ALIASES)})")
        if weight < 0:
            raise ValueError(f"format mix weight for {name} is negative")
        mix[family] = mix.get(family, 0.0) + weight
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("format mix has no positive weight")
    return {f: w / total for f, w in mix.items() if w > 0}


def _pick_family(rng: random.Random, mix: Mapping[Family, float], kind: str) -> Family:
    allowed = [(f, w) for f, w in mix.items() if kind in FAMILY_KINDS[f]]
    if not allowed:
        allowed = [(Family.ZIGBEE2MQTT, 1.0)]
    total = sum(w for _, w in allowed)
    r = rng.random() * total
    for family, weight in allowed:
        r -= weight
        if r < 0:
            return family
    return allowed[-1][0]


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _ieee(rng: random.Random) -> str:
    return "0x00158d" + _hex(rng, 10)


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def ttn_application(community: str) -> str:
    return f"linli-{community}"


def chirpstack_application(community: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"linli:chirpstack:{community}"))


def generate(  # noqa: PLR0915 - one linear recipe reads best in one place
    *,
    seed: int = 1,
    county: str = "110105",
    street: str = "001",
    community_seq: str = "001",
    grids: int = 3,
    buildings_per_grid: int = 2,
    elders_per_building: int = 3,
    parking_per_grid: int = 2,
    living_alone_share: float = 0.6,
    fire_exits_per_building: int = 1,
    safety_devices: int = 0,
    mix: str | Mapping[str, float] | Mapping[Family, float] | None = None,
    name: str = "幸福里社区",
) -> SimCommunity:
    """A community in the registry's import format, and the devices to simulate in it.

    ``safety_devices``: the first that many residents living alone also get the home-safety kit
    (:data:`SAFETY_KIT`: smoke, gas, water leak, PIR, fall). Drawn from a separate random
    stream after everything else, so the rest of a seed's community does not change.
    """
    if not 0.0 <= living_alone_share <= 1.0:
        raise ValueError("living_alone_share must be between 0 and 1")
    weights = parse_mix(mix)
    rng = random.Random(seed)  # noqa: S311 - simulation, not security
    community_code = county + street + community_seq
    doc_grids: list[dict[str, Any]] = []
    people: list[dict[str, Any]] = []
    residents: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    sim_devices: list[SimDevice] = []
    counters: dict[str, int] = {}

    def device_id(family: Family, kind: str, model: str) -> str:
        if family is Family.ZIGBEE2MQTT:
            return _ieee(rng)
        if family is Family.TASMOTA:
            return f"tasmota_{_hex(rng, 6).upper()}/switch1"
        if family is Family.NATIVE:
            short = {"sos_button": "sos", "door_sensor": "door", "parking_sensor": "park"}.get(kind, kind[:4])
            counters[short] = counters.get(short, 0) + 1
            return f"lnl-{short}-{counters[short]:04d}"
        oui = "fcd6bd" if model.startswith("Bosch") else "24e124"
        eui = oui + _hex(rng, 10)
        return f"eui-{eui}" if family is Family.TTN_V3 else eui

    def add_device(
        kind: str,
        grid_no: int,
        grid: str,
        location: str,
        *,
        resident: dict[str, Any] | None = None,
        household: str | None = None,
        place: str | None = None,
        place_kind: str | None = None,
        fixed: tuple[Family, str] | None = None,
    ) -> None:
        family = fixed[0] if fixed is not None else _pick_family(rng, weights, kind)
        sos_action = "single"
        if fixed is not None:
            model = fixed[1]
        elif family is Family.ZIGBEE2MQTT:
            if kind == "sos_button":
                heiman = rng.random() < 0.3
                model = "HS1EB" if heiman else "TS0215A"
                sos_action = "single" if heiman else "emergency"
            elif kind == "door_sensor":
                model = "HS1DS" if rng.random() < 0.3 else "MCCGQ11LM"
            else:
                model = "PARKING-ZB"
        elif family in (Family.TTN_V3, Family.CHIRPSTACK_V4):
            model = LORA_MODELS[kind]
        elif family is Family.TASMOTA:
            model = TASMOTA_DOOR_MODEL
        else:
            model = NATIVE_MODELS[kind]
        dev_id = device_id(family, kind, model)
        entry: dict[str, Any] = {
            "id": dev_id,
            "kind": kind,
            "model": model,
            "grid": grid,
            "location": location,
        }
        if place is not None:
            entry["place"] = place
        if household is not None:
            entry["household"] = household
        if resident is not None:
            entry["resident"] = resident["id"]
        heartbeat = HEARTBEAT_S[family]
        entry["heartbeat_s"] = heartbeat
        devices.append(entry)
        gateway = {
            Family.ZIGBEE2MQTT: f"zb-coordinator-{grid_no}",
            Family.TTN_V3: f"lora-gw-{grid_no}",
            Family.CHIRPSTACK_V4: f"lora-gw-{grid_no}",
            Family.TASMOTA: dev_id.split("/", 1)[0],
            Family.NATIVE: f"linli-gw-{grid_no}",
        }[family]
        sim_devices.append(
            SimDevice(
                id=dev_id,
                kind=kind,
                model=model,
                grid=grid,
                sos_action=sos_action,
                family=family,
                heartbeat_s=heartbeat,
                location=location,
                place=place,
                place_kind=place_kind,
                household=household,
                resident=resident["id"] if resident is not None else None,
                living_alone=bool(resident["living_alone"]) if resident is not None else False,
                green_key=family is Family.NATIVE and kind == "sos_button",
                gateway=gateway,
            )
        )

    building_no = 0
    floors = max(6, (elders_per_building + 3) // 4)
    for g in range(1, grids + 1):
        grid_code = f"{community_code}{g:03d}"
        buildings: list[dict[str, Any]] = []
        places: list[dict[str, Any]] = []
        grid_doc: dict[str, Any] = {"code": grid_code, "name": f"第{g}网格"}
        # 1+3+N: a leader on office hours and staggered grid workers around the clock.
        people += [
            {
                "id": f"g{g}-leader",
                "name": _name(rng),
                "role": "grid_leader",
                "grids": [grid_code],
                "phone": f"1390000{g:02d}00",
                "shifts": [{"days": "mon-fri", "start": "08:30", "end": "17:30"}],
            },
            {
                "id": f"g{g}-day",
                "name": _name(rng),
                "role": "grid_worker",
                "grids": [grid_code],
                "phone": f"1390000{g:02d}01",
                "shifts": [{"days": "all", "start": "08:00", "end": "20:00"}],
            },
            {
                "id": f"g{g}-night",
                "name": _name(rng),
                "role": "grid_worker",
                "grids": [grid_code],
                "phone": f"1390000{g:02d}02",
                "shifts": [{"days": "all", "start": "20:00", "end": "08:00"}],
            },
            {
                "id": f"g{g}-mid",
                "name": _name(rng),
                "role": "grid_worker",
                "grids": [grid_code],
                "phone": f"1390000{g:02d}03",
                "shifts": [{"days": "all", "start": "12:00", "end": "00:00"}],
            },
        ]
        elder_devices: list[tuple[dict[str, Any], str, str]] = []
        for _ in range(buildings_per_grid):
            building_no += 1
            b = building_no
            units: list[dict[str, Any]] = []
            for u in (1, 2):
                households = [
                    {"id": f"b{b}-u{u}-{floor}0{room}", "room": f"{floor}0{room}"}
                    for floor in range(1, floors + 1)
                    for room in (1, 2)
                ]
                units.append({"id": f"b{b}-u{u}", "name": f"{u}单元", "households": households})
            buildings.append({"id": f"b{b}", "name": f"{b}号楼", "units": units})
            places.append({"id": f"b{b}-entrance", "kind": "entrance", "name": f"{b}号楼单元门"})
            for x in range(1, fire_exits_per_building + 1):
                places.append(
                    {"id": f"b{b}-fire-exit-{x}", "kind": "fire_exit", "name": f"{b}号楼消防通道门{x}"}
                )
            taken = rng.sample(
                [(u["id"], h["id"], h["room"]) for u in units for h in u["households"]],
                k=min(elders_per_building, 2 * 2 * floors),
            )
            taken.sort()
            for unit_id, household_id, room in taken:
                unit = int(unit_id.rsplit("u", 1)[1])
                age = 65 + rng.randrange(30)
                contacts = [
                    {
                        "name": _name(rng),
                        "relation": rng.choice(RELATIONS),
                        "phone": f"138{rng.randrange(10**8):08d}",
                    }
                    for _ in range(1 + rng.randrange(2))
                ]
                resident = {
                    "id": f"r{len(residents) + 1:04d}",
                    "name": _name(rng),
                    "household": household_id,
                    "address": f"{b}号楼{unit}单元{room}",
                    "phone": f"010{rng.randrange(10**8):08d}",
                    "age": age,
                    "living_alone": rng.random() < living_alone_share,
                    "disabled": rng.random() < 0.1,
                    "cognitive_impairment": age >= 85 and rng.random() < 0.3,
                    "emergency_contacts": contacts,
                }
                residents.append(resident)
                elder_devices.append((resident, household_id, f"{b}号楼{unit}单元{room}"))
        for resident, household_id, where in elder_devices:
            add_device("sos_button", g, grid_code, where, resident=resident, household=household_id)
            add_device(
                "door_sensor", g, grid_code, where + " 入户门", resident=resident, household=household_id
            )
        for place in places:
            add_device(
                "door_sensor", g, grid_code, place["name"], place=place["id"], place_kind=place["kind"]
            )
        places.append({"id": f"g{g}-lot", "kind": "parking_lot", "name": f"第{g}网格停车场"})
        for p in range(1, parking_per_grid + 1):
            space = {
                "id": f"g{g}-space-{p}",
                "kind": "parking_space",
                "name": f"车位{g}-{p}",
                "lot": f"g{g}-lot",
            }
            places.append(space)
            add_device(
                "parking_sensor", g, grid_code, space["name"], place=space["id"], place_kind="parking_space"
            )
        lane = {"id": f"fire-lane-{g}", "kind": "fire_lane", "name": f"第{g}网格消防通道"}
        places.append(lane)
        add_device("parking_sensor", g, grid_code, lane["name"], place=lane["id"], place_kind="fire_lane")
        grid_doc["buildings"] = buildings
        grid_doc["places"] = places
        doc_grids.append(grid_doc)

    if safety_devices > 0:
        rng = random.Random(seed * 1_000_003 + 16)  # noqa: S311 - a separate stream, see docstring
        alone = [d for d in sim_devices if d.kind == "sos_button" and d.living_alone][:safety_devices]
        for owner in alone:
            resident = next(r for r in residents if r["id"] == owner.resident)
            grid_no = int(owner.grid[-3:])
            for kind, family, model in SAFETY_KIT:
                add_device(
                    kind,
                    grid_no,
                    owner.grid,
                    owner.location,
                    resident=resident,
                    household=owner.household,
                    fixed=(family, model),
                )

    all_grids = [g["code"] for g in doc_grids]
    people += [
        {
            "id": "duty-officer",
            "name": _name(rng),
            "role": "duty_officer",
            "grids": all_grids,
            "phone": "13900009000",
            "shifts": [{"days": "all", "start": "00:00", "end": "00:00"}],
        },
        {
            "id": "command-supervisor",
            "name": _name(rng),
            "role": "command_supervisor",
            "grids": all_grids,
            "phone": "13900009001",
            "shifts": [{"days": "all", "start": "00:00", "end": "00:00"}],
        },
    ]
    document = {
        "version": 1,
        "communities": [
            {
                "code": community_code,
                "name": name,
                "street": {"code": county + street, "name": "示范街道"},
                "grids": doc_grids,
                "people": people,
                "residents": residents,
                "devices": devices,
            }
        ],
    }
    return SimCommunity(document=document, devices=tuple(sim_devices))


# -- loading an existing community file ----------------------------------------------------------


def infer_family(device: Mapping[str, Any]) -> Family:
    """The family of a registry device entry, from its id and model (the registry has no field)."""
    dev_id = str(device.get("id", ""))
    model = f"{device.get('profile') or ''} {device.get('model') or ''}".lower()
    if "tasmota" in model or "/switch" in dev_id or dev_id.startswith("tasmota"):
        return Family.TASMOTA
    if dev_id.startswith("eui-"):
        return Family.TTN_V3
    if len(dev_id) == 16 and all(c in "0123456789abcdef" for c in dev_id.lower()):
        return Family.CHIRPSTACK_V4
    if dev_id.startswith("0x"):
        return Family.ZIGBEE2MQTT
    if dev_id.startswith("lnl-") or "linli" in model:
        return Family.NATIVE
    return Family.ZIGBEE2MQTT


def from_document(document: dict[str, Any], *, families: Mapping[str, Family] | None = None) -> SimCommunity:
    """A :class:`SimCommunity` for a registry document (``families`` overrides the inference)."""
    if not isinstance(document, dict) or not isinstance(document.get("communities"), list):
        raise ValueError("not a registry document: no `communities` list")
    sim: list[SimDevice] = []
    for community in document["communities"]:
        places = {
            p["id"]: p for g in community.get("grids", []) for p in g.get("places", []) if isinstance(p, dict)
        }
        residents = {r["id"]: r for r in community.get("residents", []) if isinstance(r, dict)}
        grid_no = {g["code"]: i + 1 for i, g in enumerate(community.get("grids", []))}
        roots = {
            str(source["family"]): str(source.get("base_topic", ""))
            for source in community.get("sources", [])
            if isinstance(source, dict)
        }
        for entry in community.get("devices", []):
            dev_id = str(entry["id"])
            family = (families or {}).get(dev_id) or infer_family(entry)
            model = str(entry.get("model") or "")
            resident = residents.get(str(entry.get("resident"))) if entry.get("resident") else None
            place = places.get(str(entry.get("place"))) if entry.get("place") else None
            kind = str(entry["kind"])
            grid = str(entry["grid"])
            n = grid_no.get(grid, 0)
            sim.append(
                SimDevice(
                    id=dev_id,
                    kind=kind,
                    model=model,
                    grid=grid,
                    sos_action="emergency" if model == "TS0215A" else "single",
                    family=family,
                    heartbeat_s=float(entry.get("heartbeat_s", 3600.0)),
                    location=str(entry.get("location") or ""),
                    place=place["id"] if place else None,
                    place_kind=str(place["kind"]) if place else None,
                    household=entry.get("household"),
                    resident=resident["id"] if resident else None,
                    living_alone=bool(resident.get("living_alone")) if resident else False,
                    green_key=family is Family.NATIVE and kind == "sos_button",
                    gateway=dev_id.split("/", 1)[0] if family is Family.TASMOTA else f"{family.value}-gw-{n}",
                    base_topic=roots.get(family.value, ""),
                )
            )
    return SimCommunity(document=document, devices=tuple(sim))


def load(path: Path, *, families: Mapping[str, Family] | None = None) -> SimCommunity:
    """Read a community file in the registry's YAML format (as :meth:`SimCommunity.write` writes)."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the community file: {exc}") from None
    try:
        return from_document(document, families=families)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a community file: {exc}") from None
