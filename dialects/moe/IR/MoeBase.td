//===- MoeBase.td - moe dialect definition and base classes -*- tablegen -*-===//
//
// Part of moec. The `moe` dialect: model-level ops of Mixture-of-Experts
// language models, on value-semantic tensors.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_IR_MOEBASE_TD
#define MOE_IR_MOEBASE_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Dialect
//===----------------------------------------------------------------------===//

def Moe_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::mlir::moe";
  let summary = "Model-level ops of Mixture-of-Experts language models";
  let description = [{
    The `moe` dialect is the first IR of moec. The checkpoint importer emits
    one function per entry point (`prefill`, `decode`) built from the
    fine-grained ops of this dialect, mixed with upstream `tensor` ops for
    reshapes and slices. Later passes fuse them (MLA weight absorption,
    expert dispatch, norm/residual) and lower them to `linalg`/`vector`/`scf`
    for the CPU and to `gpu`/`nvvm` for CUDA.

    Design rules:

    * **Value semantics.** Every op takes and returns `tensor`s; there are no
      side effects. State that survives a call (the KV cache) is threaded
      through the entry points as tensors and updated functionally by
      `moe.attention`; bufferization later makes the update in place.
    * **Weights are references.** `moe.param` names a checkpoint tensor; the
      IR never holds weight bytes. Weight transforms (stacking experts,
      absorbing MLA products, packing) are ops on `moe.param` values that the
      compiler evaluates at compile time.
    * **Token-major activations.** Activations are `tensor<?xHxf32>` with one
      row per token of the sequence; the dynamic dimension is the only one.
      Heads get their own dimension (`tensor<?xHeadsxDxf32>`) where an op
      works per head.
    * **Positions are a scalar.** The tokens of one call sit at contiguous
      positions `start_pos .. start_pos + T - 1`; `moe.rope` and
      `moe.attention` take `start_pos : index`.
    * **HF weight layout.** Linear weights are `[out, in]` as HuggingFace
      stores them; any repacking is a compile-time transform.
  }];
  let useDefaultAttributePrinterParser = 0;
  let useDefaultTypePrinterParser = 0;
}

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Moe_ScoringFunc : I32EnumAttr<"ScoringFunc",
    "how router logits become expert scores", [
      I32EnumAttrCase<"softmax", 0>,
      I32EnumAttrCase<"sigmoid", 1>
    ]> {
  let cppNamespace = "::mlir::moe";
}

def Moe_TopKMethod : I32EnumAttr<"TopKMethod",
    "how the router selects experts from scores", [
      // Plain top-k over all experts (Mixtral, Qwen-MoE, DeepSeek-V2-Lite).
      I32EnumAttrCase<"greedy", 0>,
      // Keep the topk_group groups with the highest max score, then top-k
      // inside them (DeepSeek-V2).
      I32EnumAttrCase<"group_limited_greedy", 1>,
      // Rank groups by the sum of their two best bias-corrected scores, then
      // top-k on bias-corrected scores; weights use the uncorrected scores
      // (DeepSeek-V3/R1).
      I32EnumAttrCase<"noaux_tc", 2>
    ]> {
  let cppNamespace = "::mlir::moe";
}

def Moe_RopeScaling : I32EnumAttr<"RopeScaling",
    "rotary embedding frequency scaling", [
      I32EnumAttrCase<"none", 0>,
      I32EnumAttrCase<"linear", 1>,
      I32EnumAttrCase<"yarn", 2>,
      I32EnumAttrCase<"llama3", 3>
    ]> {
  let cppNamespace = "::mlir::moe";
}

//===----------------------------------------------------------------------===//
// Base op classes
//===----------------------------------------------------------------------===//

class Moe_Op<string mnemonic, list<Trait> traits = []>
    : Op<Moe_Dialect, mnemonic, traits>;

// Every model-level op is side-effect free: value semantics on tensors.
class Moe_PureOp<string mnemonic, list<Trait> traits = []>
    : Moe_Op<mnemonic, !listconcat(traits, [Pure])>;

#endif // MOE_IR_MOEBASE_TD
