"""The CUDA source of the GPU kernels compiles with nvcc, on any machine that has nvcc.

No GPU is needed: this catches a syntax or type error in a kernel before it can land. nvcc is the
one on the PATH, else one from NVIDIA's wheels (found with cuda-pathfinder): ``pip install
nvidia-cuda-nvcc nvidia-nvvm nvidia-cuda-crt nvidia-cuda-runtime`` gives a complete one (with the
system's C++ compiler) where no CUDA toolkit is installed.
"""

import re
import shutil
import subprocess

import pytest

from xpnet.kernels import cuda_step, cupy_gpu, cupy_graph


def _nvcc():
    """nvcc on the PATH, else from NVIDIA's pip wheels, else None."""
    found = shutil.which("nvcc")
    if found is None:
        try:
            from cuda.pathfinder import find_nvidia_binary_utility
        except ImportError:
            return None
        found = find_nvidia_binary_utility("nvcc")
    return found


NVCC = _nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is neither on the PATH nor installed from pip (pip install "
                                                      "nvidia-cuda-nvcc nvidia-nvvm nvidia-cuda-crt nvidia-cuda-runtime "
                                                      "cuda-pathfinder)")


def nvcc_compile(source_path, tmp_path, *defines):
    result = subprocess.run(
        [NVCC, "-c", "-std=c++17", "-arch=sm_80", *defines, str(source_path), "-o", str(tmp_path / "out.o")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.o").stat().st_size > 0


@pytest.mark.parametrize("sources", [[cupy_gpu.SOFTMAX_CE_SOURCE], [cupy_graph.GEMM_SOURCE], [cupy_graph.STEP_SOURCE],
                                     [cuda_step.GATHER_SOURCE, cuda_step.FUSED_SOURCE],
                                     [cuda_step.GATHER_SOURCE, cuda_step.FUSED_SOURCE, cuda_step.PERSISTENT_SOURCE]],
                         ids=lambda sources: "+".join(p.name for p in sources))
def test_raw_kernels_compile(sources, tmp_path):
    source = tmp_path / "module.cu"  # as CuPy compiles them: one module
    source.write_text("".join(p.read_text() for p in sources))
    nvcc_compile(source, tmp_path, "-DXPNET_NVCC_CHECK")


@pytest.mark.parametrize("ctype,precision", [("float", "highest"), ("double", "highest"), ("float", "tf32"),
                                             ("float", "bf16")])
def test_fused_step_module_compiles_every_kernel_it_names(ctype, precision, tmp_path):
    # the source CuPy compiles for cuda_step (gather + fused kernels), with each name expression
    # the plans launch instantiated; the tensor-core products as their own module compiles them
    taken = "".join(f"  (void)&{name};\n" for name in cuda_step.kernel_names(ctype, precision))
    source = tmp_path / "fused_module.cu"
    source.write_text(cuda_step.GATHER_SOURCE.read_text() + cuda_step.FUSED_SOURCE.read_text()
                      + f"void xpnet_instantiate() {{\n{taken}}}\n")
    nvcc_compile(source, tmp_path, *(["-DXPNET_TENSOR_CORES"] if precision != "highest" else []))


def test_tensor_core_products_need_their_module(tmp_path):
    # without XPNET_TENSOR_CORES (the default module, which CuPy compiles without mma.h) a
    # tensor-core product is refused at compile time, never built as something else
    name = cuda_step.kernel_names("float", "tf32")[0]
    source = tmp_path / "default_module.cu"
    source.write_text(cuda_step.GATHER_SOURCE.read_text() + cuda_step.FUSED_SOURCE.read_text()
                      + f"void xpnet_instantiate() {{ (void)&{name}; }}\n")
    result = subprocess.run([NVCC, "-c", "-std=c++17", "-arch=sm_80", str(source), "-o", str(tmp_path / "out.o")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "incomplete type" in result.stderr


# CuPy's names for the parameter types an ElementwiseKernel declares explicitly.
CUDA_TYPES = {"int64": "long long", "float64": "double", "float32": "float", "bool": "bool", "T": "T"}


def elementwise_as_cuda(name, in_params, out_params, body):
    """Wrap an ElementwiseKernel body the way CuPy does: each parameter is element i of an array."""
    params, loads = [], []
    for kind, decl in (("in", in_params), ("out", out_params)):
        for words in (p.split() for p in decl.split(",")):
            raw = words[0] == "raw"  # a raw array is indexed by the body itself
            typ, var = CUDA_TYPES[words[-2]], words[-1]
            const = "const " if kind == "in" else ""
            if raw:
                params.append(f"{const}{typ}* {var}")
            else:
                params.append(f"{const}{typ}* {kind}_{var}")
                loads.append(f"{const}{typ}{'' if kind == 'in' else '&'} {var} = {kind}_{var}[i];")
    signature = ", ".join(params + ["long long n"])
    instances = "".join(
        "template __global__ void xpnet_" + name + "<" + t + ">(" + re.sub(r"\bT\b", t, signature) + ");\n"
        for t in ("float", "double")
    )
    return (
        f"template <typename T> __global__ void xpnet_{name}({signature}) {{\n"
        "  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;\n"
        "  if (i >= n) return;\n  " + "\n  ".join(loads) + f"\n  {body}\n}}\n" + instances
    )


ALL_ELEMENTWISE = {**cupy_gpu.ELEMENTWISE, **cupy_graph.GRAPH_ELEMENTWISE}


@pytest.mark.parametrize("name", sorted(ALL_ELEMENTWISE))
def test_elementwise_kernel_bodies_compile(name, tmp_path):
    source = tmp_path / f"{name}.cu"
    source.write_text(elementwise_as_cuda(name, *ALL_ELEMENTWISE[name]))
    nvcc_compile(source, tmp_path)
