"""What torch's API returns, as kinds. Anything not listed returns a tensor."""

from __future__ import annotations

# torch.* / torch.nn.functional.* / tensor methods returning several tensors
MULTI = frozenset("""
chunk split tensor_split split_with_sizes unbind meshgrid broadcast_tensors hsplit vsplit dsplit
sort topk kthvalue mode aminmax std_mean var_mean unique unique_consecutive frexp lu qr svd eig eigh
slogdet histogram cummax cummin gradient lstsq lu_factor lu_unpack geqrf triangular_solve
""".split())
# multi only when a dim argument is given: torch.max(x) is a tensor, torch.max(x, 1) is (values, indices)
MULTI_WITH_DIM = frozenset("max min median nanmedian".split())

# calls returning plain Python values (no conversion involved)
PYTHON = frozenset("""
is_tensor is_storage is_floating_point is_complex is_conj is_inference is_grad_enabled
is_inference_mode_enabled get_default_dtype finfo iinfo device dtype typename
is_autocast_enabled get_autocast_gpu_dtype get_autocast_dtype are_deterministic_algorithms_enabled
dim ndimension is_contiguous is_pinned is_shared is_sparse get_device element_size data_ptr stride
storage_offset nbytes itemsize is_set_to equal allclose has_names type_as_str
register_hook retain_grad
""".split())
# submodules of torch whose calls are not tensor ops
PYTHON_NAMESPACES = ("torch.cuda", "torch.backends", "torch.distributed", "torch.jit", "torch.onnx",
                     "torch.compiler", "torch._dynamo", "torch.fx", "torch.utils.data", "torch.hub",
                     "torch.autograd.profiler", "torch.profiler", "torch.testing", "torch.overrides",
                     "torch.cpu", "torch.mps", "torch.xpu", "torch.amp", "torch.random")
SIZE_RETURNING = frozenset({"numel", "nelement"})
# tensor methods that convert to Python (TS106) and what they produce
CONVERTING_METHODS = {"item": "a Python number", "tolist": "a Python list", "numpy": "a NumPy array",
                      "__index__": "a Python index", "__int__": "a Python int", "__float__": "a Python float",
                      "__bool__": "a Python bool"}
NON_TENSOR_ATTRS = frozenset("""
ndim dtype device requires_grad is_cuda is_cpu is_meta is_quantized is_sparse is_leaf layout names
is_mkldnn is_nested itemsize nbytes grad_fn output_nr
""".split())
TENSOR_ATTRS = frozenset("T mT H mH data grad real imag values indices".split())

# guards whose value is known while exporting: name -> value under (trace, dynamo)
GUARDS = {
    "torch.jit.is_tracing": (True, False),
    "torch._C._get_tracing_state": (True, False),
    "torch.jit.is_scripting": (False, False),
    "torch.compiler.is_compiling": (False, True),
    "torch.compiler.is_dynamo_compiling": (False, True),
    "torch.compiler.is_exporting": (False, True),
    "torch._dynamo.is_compiling": (False, True),
    "torch.fx._symbolic_trace.is_fx_tracing": (False, False),
    "is_torchdynamo_compiling": (False, True),
    "is_tracing": (True, None),
}

NON_TENSOR_ANNOTATIONS = frozenset(
    "int float bool str bytes complex dict set Dict Set str None Callable Any".split()
)
