"""ARM (aarch64) presets: Raspberry Pi 4/5, Android phones, generic aarch64 Linux.

Linux presets link with Debian's cross compiler `aarch64-linux-gnu-gcc`
(apt-get install gcc-aarch64-linux-gnu). Android links with the NDK's clang: TVM_NDK_CC names it
directly, or it is found under ANDROID_NDK_HOME.
"""
import glob
import os
import shutil
from dataclasses import dataclass

from . import Preset, register

CROSS_CC = "aarch64-linux-gnu-gcc"
ANDROID_API = 24


def _linux(name, description, mcpu, threads):
    tvm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    if mcpu:
        tvm["mcpu"] = mcpu
    if threads:
        tvm["num-cores"] = threads
    return register(Preset(name, description, tvm, "aarch64", cross_cc=CROSS_CC, vector_bits=128,
                           threads=threads, tools=[CROSS_CC]))


def ndk_cc():
    """The NDK clang for aarch64 Android, or "" when neither TVM_NDK_CC nor ANDROID_NDK_HOME is set."""
    cc = os.environ.get("TVM_NDK_CC", "")
    if cc:
        return cc
    home = os.environ.get("ANDROID_NDK_HOME", "")
    if not home:
        return ""
    found = sorted(glob.glob(os.path.join(home, "toolchains/llvm/prebuilt/*/bin/aarch64-linux-android*-clang")))
    wanted = [c for c in found if c.endswith(f"android{ANDROID_API}-clang")]
    return (wanted or found or [os.path.join(home, "toolchains/llvm/prebuilt/linux-x86_64/bin/"
                                                   f"aarch64-linux-android{ANDROID_API}-clang")])[0]


@dataclass
class AndroidPreset(Preset):
    """Links with the NDK found at compile time (the environment may change after import)."""

    @property
    def linker(self):
        return ndk_cc()

    def missing_tools(self):
        cc = ndk_cc()
        if not cc:
            return ["Android NDK (set TVM_NDK_CC to its aarch64-linux-android clang, or ANDROID_NDK_HOME)"]
        return [] if (shutil.which(cc) or os.access(cc, os.X_OK)) else [f"NDK compiler {cc}"]


_linux("rpi4", "Raspberry Pi 4 (Cortex-A72, NEON, 4 cores, 64-bit OS)", "cortex-a72", 4)
_linux("rpi5", "Raspberry Pi 5 (Cortex-A76, NEON, 4 cores, 64-bit OS)", "cortex-a76", 4)
_linux("aarch64", "generic 64-bit ARM Linux (ARMv8-A + NEON)", "", 0)
register(AndroidPreset("android-arm64", f"Android phone, arm64-v8a (API {ANDROID_API}+, NDK clang)",
                       {"kind": "llvm", "mtriple": "aarch64-linux-android", "mattr": ["+neon"]}, "aarch64",
                       vector_bits=128, tools=["TVM_NDK_CC or ANDROID_NDK_HOME"]))
