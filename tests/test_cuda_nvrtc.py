"""The fused step's CUDA modules compile with NVRTC, CUDA's runtime compiler, as CuPy compiles them.

NVRTC needs no GPU. It has no include path unless given one, which nvcc (test_cuda_source.py)
always has: this is where a kernel that needs a CUDA header would fail. NVRTC comes from pip
(``nvidia-cuda-nvrtc``, found with ``cuda-pathfinder``); .ci/run installs both when it can, and
these tests skip, with the reason, where they are missing.
"""

import ctypes

import pytest

from xpnet.kernels import cuda_step

pathfinder = pytest.importorskip("cuda.pathfinder", reason="cuda-pathfinder (to find NVRTC) is not installed")


@pytest.fixture(scope="module")
def nvrtc():
    try:
        found = pathfinder.load_nvidia_dynamic_lib("nvrtc")
    except pathfinder.DynamicLibNotFoundError as error:
        pytest.skip(f"NVRTC is not installed (pip install nvidia-cuda-nvrtc): {error}")
    lib = ctypes.CDLL(found.abs_path)
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


def nvrtc_ptx(lib, source, options, names):
    """Compile ``source`` with ``options`` and the kernels ``names`` instantiated: (status, log, PTX).
    For a real architecture (``--gpu-architecture=sm_XX``, machine code, as CuPy asks where NVRTC
    can) the third item is the size of the CUBIN instead."""
    program = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"xpnet.cu", 0, None, None) == 0
    try:
        for name in names:
            assert lib.nvrtcAddNameExpression(program, name.encode()) == 0
        argv = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        status = lib.nvrtcCompileProgram(program, len(options), argv)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(program, log)
        ptx = ""
        if status == 0 and any(o.startswith("--gpu-architecture=sm_") for o in options):
            assert lib.nvrtcGetCUBINSize(program, ctypes.byref(size)) == 0
            return status, log.value.decode(errors="replace"), size.value
        if status == 0:
            lib.nvrtcGetPTXSize(program, ctypes.byref(size))
            buffer = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetPTX(program, buffer)
            ptx = buffer.value.decode()
        return status, log.value.decode(errors="replace"), ptx
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


# what CuPy 14's compiler adds to a RawModule's options (cupy/cuda/compiler.py), besides the architecture
CUPY_ADDS = ("-ftz=true", "--device-as-default-execution-space")

WMMA = {  # the tensor-core instructions each precision's products must contain, and only they
    "highest": (),
    "tf32": ("wmma.load.a.sync.aligned.col.m16n16k8.tf32", "wmma.load.b.sync.aligned.row.m16n16k8.tf32",
             "wmma.mma.sync.aligned.col.row.m16n16k8.f32.tf32.tf32.f32", "wmma.store.d.sync.aligned.row.m16n16k8.f32",
             "cvt.rna.tf32.f32"),
    "bf16": ("wmma.load.a.sync.aligned.col.m16n16k16.bf16", "wmma.load.b.sync.aligned.row.m16n16k16.bf16",
             "wmma.mma.sync.aligned.col.row.m16n16k16.f32.bf16.bf16.f32",
             "wmma.store.d.sync.aligned.row.m16n16k16.f32", "cvt.rn.bf16.f32"),
}


@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
@pytest.mark.parametrize("ctype,precision", [("float", "highest"), ("double", "highest"), ("float", "tf32"),
                                             ("float", "bf16")])
def test_fused_step_modules_compile_without_an_include_path(nvrtc, ctype, precision, arch):
    source, options, names = cuda_step.module_spec(ctype, precision)
    assert not any(o.startswith(("-I", "--include-path")) for o in options)
    status, log, ptx = nvrtc_ptx(nvrtc, source, (*options, *CUPY_ADDS, f"--gpu-architecture={arch}"), names)
    assert status == 0, f"{nvrtc.nvrtcGetErrorString(status).decode()}:\n{log}"
    for instruction in WMMA[precision]:
        assert instruction in ptx, instruction
    if precision == "highest":
        assert "wmma." not in ptx and ".tf32" not in ptx and ".bf16" not in ptx
    entries = ptx.count(".entry ")
    assert entries == len(names), (entries, names)


@pytest.mark.parametrize("max_staged_k", [16, 64])
@pytest.mark.parametrize("precision", ["highest", "tf32", "bf16"])
def test_fused_step_modules_assemble_for_the_h100(nvrtc, precision, max_staged_k):
    # machine code for sm_90: NVRTC runs ptxas on the inline PTX too; at the staging bench.launches
    # compares with (16) and the default (64)
    source, options, names = cuda_step.module_spec("float", precision, max_staged_k)
    assert f"-DXPNET_MAX_BK={max_staged_k}" in options
    status, log, cubin_size = nvrtc_ptx(nvrtc, source, (*options, *CUPY_ADDS, "--gpu-architecture=sm_90"), names)
    assert status == 0, f"{nvrtc.nvrtcGetErrorString(status).decode()}:\n{log}"
    assert cubin_size > 0


@pytest.mark.parametrize("name,blocks_per_sm", [("xpnet_persistent_step<float, long long>", 1),
                                                ("xpnet_persistent_step<double, double>", 2)])
def test_persistent_step_module_assembles_for_the_h100(nvrtc, name, blocks_per_sm):
    # its own module of the one kernel a fit needs (the plan's module does not pay for compiling it),
    # machine code for sm_90: ptxas checks that it fits its launch bounds at that many blocks per
    # multiprocessor
    ctype = name.split("<")[1].split(",")[0]
    source, options, names = cuda_step.module_spec(ctype, persistent=True, blocks_per_sm=blocks_per_sm)
    assert name in names and names == tuple(cuda_step.persistent_kernel_names(ctype))
    assert f"-DXPNET_PERSISTENT_BLOCKS_PER_SM={blocks_per_sm}" in options
    assert "xpnet_persistent_step" not in cuda_step.module_spec(ctype)[0]
    status, log, cubin_size = nvrtc_ptx(nvrtc, source, (*options, *CUPY_ADDS, "--gpu-architecture=sm_90"), (name,))
    assert status == 0, f"{nvrtc.nvrtcGetErrorString(status).decode()}:\n{log}"
    assert cubin_size > 0


def test_persistent_module_spec_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="highest-precision products only, not 'tf32'"):
        cuda_step.module_spec("float", "tf32", persistent=True)
    with pytest.raises(ValueError, match="blocks_per_sm must be 1 or 2, got 3"):
        cuda_step.module_spec("float", persistent=True, blocks_per_sm=3)


def test_a_missing_header_fails_as_it_would_under_cupy(nvrtc):
    # the check above can fail: NVRTC without an include path refuses a CUDA header
    source = "#include <mma.h>\n" + cuda_step.module_spec("float", "tf32")[0]
    status, log, _ = nvrtc_ptx(nvrtc, source, ("--std=c++17", "-DXPNET_TENSOR_CORES"), ())
    assert status != 0 and "mma.h" in log


def test_module_spec_stages_what_the_kernels_accept():
    assert "-DXPNET_MAX_BK=64" in cuda_step.module_spec("float")[1] and cuda_step.MAX_STAGED_K == 64
    with pytest.raises(ValueError, match="max_staged_k must be 16, 32 or 64, got 48"):
        cuda_step.module_spec("float", "highest", 48)
