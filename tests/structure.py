"""Which presets a test may assert a schedule's structure on (tiles, tails, pixel chunks, copies,
prefetches): the fixed ones (x86-avx2, rpi4, ...), whose caches and vector width the test's shapes
were chosen for. The host's are its own (an AVX-512 machine with a 2 MB L2 picks other tiles and
chunks for the same shapes): there a test checks the numbers alone."""


def fixed(preset):
    return preset != "host"
