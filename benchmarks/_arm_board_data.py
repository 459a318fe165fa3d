"""The transcribed board data of ``bench_arm_boards.py`` and its comparability constants: the ncnn benchmark
models' zoo nets, the boards' core types, memory bandwidths and caches, the comparability rules (DATA_DATE,
KERNELS_SINCE, UNSTEADY_MAX_OVER_MIN), the Raspberry Pi measurements (PI_BOARDS) and the MLPerf Tiny task / core
names; with the reader of ncnn_arm_boards.csv that applies those rules (:func:`ncnn_rows`). Sources in the comments.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"  # copies of the published measurements, sources per row (data/README.md)

# ncnn benchmark model -> (zoo net, build keywords): the topologies of ncnn's benchmark/*.param (commit a4d2ea1).
# resnet18 / resnet50 / mobilenet_v2 / shufflenet: the zoo's ``layout="ncnn"`` builds (Caffe ResNets with a 1x1
# projection on every stage's first block and ResNet-50 v1's stride on the first 1x1; MobileNetV2 with ReLU and an
# expand conv in the first bottleneck; ShuffleNet v1 g=3 as in ncnn's shufflenet.param); mobilenet = MobileNet v1
# 1.0; the others' zoo defaults are ncnn's layouts (nets/*.py docstrings); all at 224x224.
NCNN = {"layout": "ncnn"}
NCNN_NETS = {"mobilenet": ("mobilenetv1", {}), "mobilenet_v2": ("mobilenetv2", NCNN),
             "shufflenet": ("shufflenetv1", NCNN), "shufflenet_v2": ("shufflenetv2", {}),
             "resnet18": ("resnet18", NCNN), "resnet50": ("resnet50", NCNN), "vgg16": ("vgg16", {}),
             "squeezenet": ("squeezenet1.1", {}), "mobilenet_v3": ("mobilenetv3-large", {}),
             "mnasnet": ("mnasnet1.0", {}), "proxylessnasnet": ("proxylessnas-mobile", {}),
             "efficientnet_b0": ("efficientnet-b0", {}), "regnety_400m": ("regnety-400mf", {}),
             "googlenet": ("googlenet", {}), "alexnet": ("alexnet", {})}
NET_KW = dict(NCNN_NETS.values())  # zoo net -> its build keywords (one build per zoo net here)
CORE_OF = {"A53": "cortex-a53", "A55": "cortex-a55", "A57": "cortex-a57", "A72": "cortex-a72", "A73": "cortex-a73",
           "A76": "cortex-a76", "A78": "cortex-a78", "A78AE": "cortex-a78"}
NEAREST = {"cortex-a53": "cortex-a55", "cortex-a55": "cortex-a53", "cortex-a57": "cortex-a72",
           "cortex-a72": "cortex-a73", "cortex-a73": "cortex-a72", "cortex-a76": "cortex-a78",
           "cortex-a78": "cortex-a76", "cortex-m4": "cortex-m33", "cortex-m33": "cortex-m4", "cortex-m7": "cortex-m4",
           "cortex-m55": "cortex-m85", "cortex-m85": "cortex-m55", "cortex-m0plus": "cortex-m4"}
# Main-memory peak bandwidth (B/s) by SoC: bus width x transfer rate of the memory type in the SoC's product brief
# (the same convention as the shipped presets: peak, not sustained). Unknown SoC: DEFAULT_DRAM_BW.
SOC_DRAM_BW = {
    "Rockchip RK3399": 12.8e9,  # 2 x 32-bit LPDDR4-1600 (RK3399 brief)
    "Rockchip RK3588": 34.1e9, "Rockchip RK3588S": 34.1e9,  # 4 x 16-bit LPDDR4x-4266 (RK3588 brief)
    "Rockchip RK3568": 12.5e9, "Rockchip RK3566": 12.5e9,  # 32-bit LPDDR4-3120 (RK3568/RK3566 brief)
    "Rockchip RK3328": 8.5e9, "Rockchip RK3228H": 8.5e9,  # 32-bit DDR4-2133
    "Allwinner H616": 8.5e9, "Allwinner T527": 12.8e9, "Amlogic A311D": 10.6e9,  # 32-bit DDR4 / LPDDR4
    "HiSilicon Kirin 970": 29.8e9, "Qualcomm MSM8994 Snapdragon 810": 25.6e9,  # 64-bit LPDDR4X / LPDDR4
    "Qualcomm MSM8916 Snapdragon 410": 4.3e9, "NVIDIA Orin": 204.8e9,  # 32-bit LPDDR3-1066; 256-bit LPDDR5
    "Renesas RZ/G2L (header \"RZG2L\")": 3.2e9,  # 16-bit DDR4-1600
}
DEFAULT_DRAM_BW = 8.5e9  # a 32-bit DDR4-2133 interface, the most common in the file
# Cache configuration by core (the usual configuration of the SoCs in the file, Arm TRMs: L1D per core, L2 shared by
# the cluster (A53, A57, A72, A73) or per core (A55, A76, A78), plus a DSU L3 on the DynamIQ parts)
CACHES = {"cortex-a53": (32768, 524288, False, 0), "cortex-a55": (32768, 131072, True, 1048576),
          "cortex-a57": (32768, 2097152, False, 0), "cortex-a72": (32768, 1048576, False, 0),
          "cortex-a73": (65536, 1048576, False, 0), "cortex-a76": (65536, 524288, True, 3145728),
          "cortex-a78": (65536, 262144, True, 2097152)}
# Where the SoC's own cache configuration is published (the Linux device trees' cache nodes), it replaces the core's
# usual one: RK3566 / RK3568 (arch/arm64/boot/dts/rockchip/rk356x-base.dtsi: no private L2, "only the L3 cache that
# appears to the CPU cores as L2", 512 KB shared by the four A55s); RK3588 / RK3588S (rk3588-base.dtsi, formerly
# rk3588s.dtsi: A55 128 KB and A76 512 KB private L2, 3 MB L3 shared by both clusters).
SOC_CACHES = {
    "Rockchip RK3566": {"cortex-a55": (32768, 524288, False, 0)},
    "Rockchip RK3568": {"cortex-a55": (32768, 524288, False, 0)},
    "Rockchip RK3588": {"cortex-a55": (32768, 131072, True, 3145728), "cortex-a76": (65536, 524288, True, 3145728)},
    "Rockchip RK3588S": {"cortex-a55": (32768, 131072, True, 3145728), "cortex-a76": (65536, 524288, True, 3145728)},
}


def caches(soc: str, core: str) -> tuple[int, int, bool, int]:
    """(L1D, L2, L2 per core, L3) bytes of ``core`` on ``soc``: SOC_CACHES where the SoC's are published, else
    the core's usual configuration (CACHES)."""
    return SOC_CACHES.get(soc, {}).get(core, CACHES[core])


# Comparability rules, fixed from the data's own columns and ncnn's history before any error was looked at:
# 1. ncnn version. Every row comes from benchmark/README.md at a4d2ea1, written there by many contributors over
#    six years. DATA_DATE: the commit date of each section's CPU result lines (``git blame benchmark/README.md`` at
#    a4d2ea1). A row committed before the kernels hwsim's ncnn rules follow were merged was measured with other
#    kernels: fp32 before 2023-03-20 (ncnn dabc4c065 "arm convolution winograd unified elempack", 2023-03-09, and
#    c777bf09d "arm convolution sgemm unified elempack", 2023-03-20: convolution_3x3_winograd.h with the
#    test_prefer_winograd* choice and convolution_im2col_gemm.h), int8 before 2023-10-22 (c8662cce5 "int8 gemm
#    unified elempack", 2023-09-18, and 80b3b9c6f "int8 winograd unified elempack", 2023-10-22). Those rows are
#    "older ncnn": never fitted, reported apart, predicted with the current-kernel parameters.
# 2. Unsteady runs: benchncnn prints min / max / avg over loop_count runs; max > 1.5 x min says the runs were not
#    in one steady state (DVFS, throttling, another load), so avg is no steady-state latency. Excluded.
# (Already in ncnn_rows: a big.LITTLE mix of core types, threads above the cores of the row's type, unknown clock.)
KERNELS_SINCE = {"fp32": "2023-03-20", "int8": "2023-10-22"}
UNSTEADY_MAX_OVER_MIN = 1.5
DATA_DATE = {  # section header (prefix after "### ") -> commit date of its CPU result lines
    "NVIDIA Jetson AGX Orin": "2022-04-25", "Kirin 970": "2020-06-12",
    "Qualcomm MSM8994 Snapdragon 810": "2022-06-30", "Qualcomm MSM8916 Snapdragon 410": "2022-01-03",
    "Qualcomm Snapdragon 888": "2024-07-01", "Radxa Zero 3W": "2024-01-30", "Avaota Aim T527": "2023-09-19",
    "Khadas VIM3": "2022-01-03", "Rockchip RK3588 (Cortex-A76": "2022-05-19", "Station-M3/ROC-RK3588S-PC": "2023-08-25",
    "Station P2": "2021-08-06", "Rock3A": "2022-01-03", "Station-M2/ROC-RK3566-PC": "2023-08-25",
    "Rockchip RK3399": "2022-01-03", "MYIR RemiPi": "2024-01-29", "OrangePi Zero 2": "2024-01-12",
    "OrangePi4 LTS": "2023-05-04", "OrangePicm4": "2024-07-02", "OrangePi5,": "2023-05-04", "OrangePi5 Plus": "2024-07-01",
    "RDK X3 Module": "2023-08-01", "NanoPi R2S": "2021-08-11", "EAIDK 310": "2022-01-17",
    "NVIDIA Jetson TX2 NX": "2023-12-11", "Rockchip RK3588 (Quad Core": "2022-10-17", "AXERA AX630C": "2024-07-08",
    "Arduino UNO Q": "2025-12-15",
}


# The Raspberry Pi boards: not in ncnn_arm_boards.csv, so never fitted. Their benchncnn results in ncnn's
# benchmark/README.md at a4d2ea1 (sections "Raspberry Pi 3 Model B+", "Raspberry Pi 4 Model B", "Raspberry Pi 5 ...
# Cortex-A76", "Raspberry Pi Zero 2 W"; CPU runs, gpu_device = -1, powersave = 0; the date is the ``git blame`` date of
# the result lines, for comparability rule 1) are the check of the presets' predictions: label -> (preset, changes
# (the clock of the section header: the Pi 4's 1.8 GHz firmware clock, the Zero 2 W's 1.0 GHz), date,
# "model/threads/min/max/avg ..." in ms).
PI_BOARDS = {
    "Raspberry Pi 3B+ (cpu/cortex-a53)": ("cpu/cortex-a53", {}, "2023-06-23", (
        "squeezenet/4/84.74/85.60/85.22 squeezenet_int8/4/74.48/74.80/74.68 mobilenet/4/107.84/110.13/108.66 "
        "mobilenet_int8/4/66.91/67.12/67.03 mobilenet_v2/4/110.64/112.73/111.68 mobilenet_v3/4/85.78/86.74/86.44 "
        "shufflenet/4/58.38/60.32/59.33 shufflenet_v2/4/46.76/47.53/47.19 mnasnet/4/95.53/95.88/95.78 "
        "proxylessnasnet/4/102.24/105.58/103.38 efficientnet_b0/4/134.87/136.98/135.86 "
        "regnety_400m/4/118.60/119.51/119.03 googlenet/4/223.78/224.85/224.22 "
        "googlenet_int8/4/188.23/190.15/189.21 resnet18/4/270.86/272.66/271.93 "
        "resnet18_int8/4/159.57/160.39/160.07 alexnet/4/157.79/160.77/159.09 resnet50/4/583.57/591.41/587.42 "
        "resnet50_int8/4/383.96/401.37/391.87 squeezenet/1/125.34/125.81/125.58 "
        "squeezenet_int8/1/135.56/136.34/135.98 mobilenet/1/204.62/207.06/205.65 "
        "mobilenet_int8/1/181.34/182.46/181.91 mobilenet_v2/1/158.69/158.94/158.80 "
        "mobilenet_v3/1/127.13/127.31/127.23 shufflenet/1/84.64/85.29/84.89 shufflenet_v2/1/74.28/74.64/74.44 "
        "mnasnet/1/148.12/148.65/148.42 proxylessnasnet/1/199.56/201.99/200.42 "
        "efficientnet_b0/1/240.94/241.75/241.27 regnety_400m/1/186.89/187.08/187.01 "
        "googlenet/1/450.64/450.96/450.79 googlenet_int8/1/424.66/426.83/425.78 resnet18/1/379.21/380.01/379.57 "
        "resnet18_int8/1/312.23/313.21/312.68 alexnet/1/270.13/270.88/270.55 resnet50/1/977.51/981.89/979.75 "
        "resnet50_int8/1/890.77/896.89/893.83")),
    "Raspberry Pi 4 (cpu/cortex-a72 at 1.8 GHz)": ("cpu/cortex-a72", {"clock_hz": 1.8e9}, "2023-06-15", (
        "squeezenet/4/46.28/46.91/46.65 squeezenet_int8/4/42.18/44.98/42.59 mobilenet/4/60.74/61.79/61.17 "
        "mobilenet_int8/4/34.19/34.55/34.37 mobilenet_v2/4/61.63/62.02/61.88 mobilenet_v3/4/47.08/48.40/47.53 "
        "shufflenet/4/32.91/33.30/33.09 shufflenet_v2/4/24.37/24.73/24.56 mnasnet/4/51.80/52.14/51.98 "
        "proxylessnasnet/4/53.02/53.58/53.32 efficientnet_b0/4/73.92/74.44/74.19 regnety_400m/4/65.27/66.12/65.70 "
        "googlenet/4/113.74/115.14/114.35 googlenet_int8/4/100.87/101.71/101.25 resnet18/4/122.27/125.39/123.12 "
        "resnet18_int8/4/82.19/94.12/83.92 alexnet/4/75.75/78.08/76.40 vgg16/4/541.66/552.56/547.09 "
        "vgg16_int8/4/391.44/395.73/394.23 resnet50/4/261.90/263.91/262.83 resnet50_int8/4/195.60/198.08/196.65 "
        "squeezenet/1/73.35/75.10/73.96 squeezenet_int8/1/69.17/69.66/69.42 mobilenet/1/123.76/125.35/124.32 "
        "mobilenet_int8/1/84.66/85.24/84.82 mobilenet_v2/1/92.98/94.05/93.48 mobilenet_v3/1/72.48/73.14/72.81 "
        "shufflenet/1/47.17/47.83/47.51 shufflenet_v2/1/41.62/42.60/42.12 mnasnet/1/83.60/84.35/83.98 "
        "proxylessnasnet/1/98.48/99.33/98.78 efficientnet_b0/1/129.45/130.02/129.73 "
        "regnety_400m/1/105.39/106.03/105.70 googlenet/1/235.38/236.34/235.94 "
        "googlenet_int8/1/209.63/210.39/210.00 resnet18/1/190.80/191.43/191.10 "
        "resnet18_int8/1/157.92/158.97/158.50 alexnet/1/139.34/139.44/139.40 vgg16/1/1066.58/1079.30/1071.85 "
        "vgg16_int8/1/866.15/873.75/869.84 resnet50/1/533.15/535.12/534.11 resnet50_int8/1/423.72/424.24/423.96")),
    "Raspberry Pi 5 (cpu/cortex-a76)": ("cpu/cortex-a76", {}, "2023-12-12", (
        "squeezenet/4/6.74/8.16/7.38 squeezenet_int8/4/6.97/7.67/7.21 mobilenet/4/9.00/72.98/33.88 "
        "mobilenet_int8/4/8.68/8.80/8.74 mobilenet_v2/4/10.46/10.63/10.52 mobilenet_v3/4/7.30/7.44/7.35 "
        "shufflenet/4/4.14/4.18/4.16 shufflenet_v2/4/3.37/3.41/3.39 mnasnet/4/6.83/8.55/7.10 "
        "proxylessnasnet/4/7.85/7.97/7.88 efficientnet_b0/4/12.28/12.37/12.33 regnety_400m/4/10.93/11.07/10.99 "
        "googlenet/4/25.13/25.47/25.35 googlenet_int8/4/24.00/24.23/24.12 resnet18/4/19.84/20.19/19.96 "
        "resnet18_int8/4/16.68/16.83/16.74 alexnet/4/21.21/21.54/21.36 vgg16/4/127.75/134.00/129.24 "
        "vgg16_int8/4/106.39/110.66/107.01 resnet50/4/45.94/46.54/46.21 resnet50_int8/4/40.16/42.58/40.75 "
        "squeezenet/1/11.77/12.18/11.87 squeezenet_int8/1/11.67/11.98/11.82 mobilenet/1/20.24/20.59/20.30 "
        "mobilenet_int8/1/14.38/14.51/14.44 mobilenet_v2/1/16.21/16.49/16.38 mobilenet_v3/1/11.64/12.12/11.80 "
        "shufflenet/1/7.17/7.24/7.20 shufflenet_v2/1/7.07/7.21/7.14 mnasnet/1/12.93/13.03/12.99 "
        "proxylessnasnet/1/15.72/15.80/15.74 efficientnet_b0/1/24.12/24.53/24.20 regnety_400m/1/16.41/16.66/16.49 "
        "googlenet/1/48.62/48.87/48.71 googlenet_int8/1/49.07/49.26/49.15 resnet18/1/29.54/30.17/29.68 "
        "resnet18_int8/1/36.30/36.55/36.42 alexnet/1/35.24/35.86/35.62 vgg16/1/188.84/190.87/189.63 "
        "vgg16_int8/1/272.27/274.15/273.10 resnet50/1/89.04/89.87/89.43 resnet50_int8/1/80.00/80.50/80.16")),
    "Raspberry Pi Zero 2 W (cpu/cortex-a53 at 1.0 GHz)": ("cpu/cortex-a53", {"clock_hz": 1.0e9}, "2022-01-17", (
        "squeezenet/4/119.52/120.29/119.93 squeezenet_int8/4/96.32/96.96/96.55 mobilenet/4/162.60/165.49/163.19 "
        "mobilenet_int8/4/90.78/91.39/91.03 mobilenet_v2/4/145.71/148.83/147.39 "
        "mobilenet_v3/4/113.89/151.95/119.04 shufflenet/4/72.72/73.27/72.96 shufflenet_v2/4/63.64/64.50/64.13 "
        "mnasnet/4/126.07/126.93/126.53 proxylessnasnet/4/139.90/140.84/140.35 "
        "efficientnet_b0/4/201.88/202.55/202.14 regnety_400m/4/156.49/157.47/156.96 "
        "googlenet/4/323.74/324.90/324.45 googlenet_int8/4/250.86/252.82/251.63 resnet18/4/351.37/355.67/353.45 "
        "resnet18_int8/4/194.83/196.68/195.51 alexnet/4/271.18/273.53/272.18 resnet50/4/777.44/797.47/782.63 "
        "resnet50_int8/4/496.78/498.86/497.57 squeezenet/1/240.53/241.07/240.77 "
        "squeezenet_int8/1/212.63/213.23/212.94 mobilenet/1/393.79/394.04/393.94 "
        "mobilenet_int8/1/286.58/286.95/286.75 mobilenet_v2/1/273.97/274.51/274.23 "
        "mobilenet_v3/1/233.77/234.59/234.20 shufflenet/1/133.05/133.36/133.23 "
        "shufflenet_v2/1/128.86/129.47/129.18 mnasnet/1/265.70/266.17/265.93 "
        "proxylessnasnet/1/329.78/330.54/330.13 efficientnet_b0/1/518.42/519.38/519.00 "
        "regnety_400m/1/329.53/330.44/329.87 googlenet/1/780.05/780.63/780.39 "
        "googlenet_int8/1/663.83/664.43/664.15 resnet18/1/653.62/657.59/654.69 "
        "resnet18_int8/1/479.03/479.72/479.40 alexnet/1/687.99/690.34/689.15 resnet50/1/1800.97/1806.11/1802.79 "
        "resnet50_int8/1/1311.68/1314.56/1313.15")),
}

# MLPerf Tiny (mlperf_tiny_cortex_m.csv): task -> zoo net, core column -> hwsim core
TINY_NETS = {"ic": "tiny-resnet8", "kws": "tiny-dscnn", "vww": "tiny-mobilenet-vww", "ad": "tiny-autoencoder"}
M_CORE = {"M0+": "cortex-m0plus", "M4": "cortex-m4", "M33": "cortex-m33", "M7": "cortex-m7", "M55": "cortex-m55",
          "M85": "cortex-m85"}


def data_date(section_header: str) -> str:
    """DATA_DATE of a row's section (a one-line error for a section the table does not date)."""
    head = section_header.removeprefix("### ")
    dates = [d for k, d in DATA_DATE.items() if head.startswith(k)]
    if len(dates) != 1:
        raise SystemExit(f"bench_arm_boards: no single DATA_DATE entry for section {head[:60]!r}")
    return dates[0]


@dataclass(frozen=True)
class Row:
    board: str  # board / core (a big.LITTLE board's clusters are separate boards here)
    core: str
    clock_hz: float
    board_cores: int
    dram_bw: float
    net: str
    precision: str
    threads: int
    ms: float
    era: str = "current"  # "current" | "older ncnn" (comparability rule 1)
    data_date: str = ""
    soc: str = ""


def ncnn_rows(nets_available: set[str]) -> tuple[list[Row], list[dict]]:
    """The usable rows of ncnn_arm_boards.csv (bench_arm_boards.py's docstring), one per (board, core, net, precision, threads),
    and the rows excluded as unsteady (comparability rule 2) with the reason."""
    out, seen, excluded = [], set(), []
    for r in csv.DictReader(open(DATA / "ncnn_arm_boards.csv")):
        ct, model = r["core_type"], r["model"].replace("-int8", "_int8")
        if ct not in CORE_OF or "+" in r["cpu_cores_used"] or not r["clock_ghz"] or "/" in r["clock_ghz"]:
            continue
        precision = "int8" if model.endswith("_int8") else "fp32"
        net = NCNN_NETS.get(model.removesuffix("_int8"), (None, {}))[0]
        count = int(r["cpu_cores_used"].split("x")[0])
        threads = int(r["threads"])
        key = (r["board"], ct, net, precision, threads)
        if net not in nets_available or threads > count or key in seen:
            continue
        seen.add(key)
        date = data_date(r["section_header"])
        ratio = float(r["max_ms"]) / float(r["min_ms"])
        if ratio > UNSTEADY_MAX_OVER_MIN:
            excluded.append(dict(board=f"{r['board']} [{ct}]", net=net, precision=precision, threads=threads,
                                 reason=f"unsteady: max/min = {ratio:.2f} > {UNSTEADY_MAX_OVER_MIN}"))
            continue
        era = "current" if date >= KERNELS_SINCE[precision] else "older ncnn"
        out.append(Row(f"{r['board']} [{ct}]", CORE_OF[ct], float(r["clock_ghz"]) * 1e9, count,
                       SOC_DRAM_BW.get(r["soc"], DEFAULT_DRAM_BW), net, precision, threads, float(r["avg_ms"]),
                       era, date, r["soc"]))
    return out, excluded


def physical(board: str) -> str:
    """The physical board of a per-cluster board name ("OrangePi 5 [A76]" -> "OrangePi 5")."""
    return board.rsplit(" [", 1)[0]
