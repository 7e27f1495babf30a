//! The building blocks of the decoder: linear maps, RMSNorm, GQA attention, SwiGLU MLP.

use candle_core::{CpuStorage, DType, Device, InplaceOp2, Layout, Tensor};

use crate::cache::KvCache;
use crate::config::{Architecture, ModelConfig};
use crate::error::{ModelError, Result};
use crate::linear::{Linear, Projections};
use crate::rope::Rope;
use crate::weights::{LoadContext, TensorSource};

/// Loads `{prefix}.weight` (`(out, in)`, quantized as the load asks) and its bias.
fn load_linear(src: &dyn TensorSource, prefix: &str, out: usize, inp: usize, bias: bool, ctx: &LoadContext) -> Result<Linear> {
    let weight = src.load_matrix(&format!("{prefix}.weight"), &[out, inp], ctx)?;
    let bias = if bias {
        Some(src.get_vector(&format!("{prefix}.bias"), out, ctx)?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

/// Root-mean-square normalisation with a learned scale.
#[derive(Debug, Clone)]
pub(crate) struct RmsNorm {
    weight: Tensor,
    /// The weight as f32 values, for the native decode step.
    values: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    pub(crate) fn load(src: &dyn TensorSource, name: &str, size: usize, eps: f64, ctx: &LoadContext) -> Result<Self> {
        let weight = src.get_vector(name, size, ctx)?;
        Ok(Self {
            values: weight.to_dtype(DType::F32)?.to_vec1()?,
            weight,
            eps: eps as f32,
        })
    }

    pub(crate) fn bytes(&self) -> usize {
        self.weight.elem_count() * self.weight.dtype().size_in_bytes()
    }

    /// The weight as f32 values.
    pub(crate) fn values(&self) -> &[f32] {
        &self.values
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)?)
    }

    /// [`Self::forward`] of one f32 vector into `out`, in candle's order of operations.
    pub(crate) fn forward_one(&self, x: &[f32], out: &mut [f32]) {
        let sum2: f32 = x.iter().map(|v| v * v).sum();
        let m = (sum2 / x.len() as f32 + self.eps).sqrt();
        for ((o, v), w) in out.iter_mut().zip(x).zip(&self.values) {
            *o = v / m * w;
        }
    }
}

/// Grouped-query self-attention with rotary positions.
#[derive(Debug, Clone)]
pub(crate) struct Attention {
    /// q, k and v projections.
    pub(crate) qkv: Projections,
    pub(crate) o: Linear,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

impl Attention {
    fn load(src: &dyn TensorSource, prefix: &str, c: &ModelConfig, ctx: &LoadContext) -> Result<Self> {
        let (h, q_out, kv_out) = (c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim);
        let qkv = if c.architecture == Architecture::Phi3 {
            let fused = load_linear(src, &format!("{prefix}.qkv_proj"), q_out + 2 * kv_out, h, c.qkv_bias, ctx)?;
            Projections::Fused(fused, vec![q_out, kv_out, kv_out])
        } else {
            let parts = vec![
                load_linear(src, &format!("{prefix}.q_proj"), q_out, h, c.qkv_bias, ctx)?,
                load_linear(src, &format!("{prefix}.k_proj"), kv_out, h, c.qkv_bias, ctx)?,
                load_linear(src, &format!("{prefix}.v_proj"), kv_out, h, c.qkv_bias, ctx)?,
            ];
            Projections::new(parts, vec![q_out, kv_out, kv_out])?
        };
        Ok(Self {
            qkv,
            o: load_linear(src, &format!("{prefix}.o_proj"), h, q_out, c.o_bias, ctx)?,
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
        })
    }

    /// `x`: `(batch, seq, hidden)`; `mask`: additive, `(batch, 1, seq, cached + seq)`.
    fn forward(&self, x: &Tensor, step: &StepContext, cache: &mut KvCache, layer: usize) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let split = |y: Tensor, heads: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, heads, self.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let [q, k, v]: [Tensor; 3] = self
            .qkv
            .forward(x)?
            .try_into()
            .map_err(|_| ModelError::InvalidInput("q/k/v projection must give three outputs".into()))?;
        let q = split(q, self.heads)?;
        let k = split(k, self.kv_heads)?;
        let v = split(v, self.kv_heads)?;
        let q = step.rope.apply(&q, &step.cos, &step.sin)?;
        let k = step.rope.apply(&k, &step.cos, &step.sin)?;
        let (k, v) = cache.append(layer, &k, &v)?;
        // Grouped-query attention without copying keys/values per head: the `groups` query
        // heads sharing a kv head are stacked along the query axis, `(b, kv, groups * t, d)`.
        let groups = self.heads / self.kv_heads;
        let total = k.dim(2)?;
        let q = q.reshape((b, self.kv_heads, groups * t, self.head_dim))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        if q.dtype() == DType::F32 && q.device().is_cpu() {
            // One pass over the scores in place, skipping masked entries (half of a
            // causal prompt's) instead of candle's scale, mask-add and softmax passes.
            let scores = q.matmul(&k.t()?)?;
            scores.inplace_op2(&step.mask, &MaskedSoftmax { scale: scale as f32, heads: self.heads, t })?;
            let out = scores.matmul(&v)?.reshape((b, self.heads, t, self.head_dim))?;
            let out = out.transpose(1, 2)?.reshape((b, t, self.heads * self.head_dim))?;
            return self.o.forward(&out);
        }
        // Mask and softmax in f32 whatever the compute dtype, as transformers does.
        let scores = (q.matmul(&k.t()?)? * scale)?
            .to_dtype(DType::F32)?
            .reshape((b, self.heads, t, total))?
            .broadcast_add(&step.mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?
            .to_dtype(q.dtype())?
            .reshape((b, self.kv_heads, groups * t, total))?;
        let out = probs.matmul(&v)?.reshape((b, self.heads, t, self.head_dim))?;
        let out = out.transpose(1, 2)?.reshape((b, t, self.heads * self.head_dim))?;
        self.o.forward(&out)
    }
}

/// `down(silu(gate(x)) * up(x))`.
#[derive(Debug, Clone)]
pub(crate) struct Mlp {
    /// gate and up projections.
    pub(crate) gate_up: Projections,
    pub(crate) down: Linear,
}

impl Mlp {
    fn load(src: &dyn TensorSource, prefix: &str, c: &ModelConfig, ctx: &LoadContext) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let gate_up = if c.architecture == Architecture::Phi3 {
            Projections::Fused(load_linear(src, &format!("{prefix}.gate_up_proj"), 2 * i, h, false, ctx)?, vec![i, i])
        } else {
            let parts = vec![
                load_linear(src, &format!("{prefix}.gate_proj"), i, h, false, ctx)?,
                load_linear(src, &format!("{prefix}.up_proj"), i, h, false, ctx)?,
            ];
            Projections::new(parts, vec![i, i])?
        };
        Ok(Self {
            gate_up,
            down: load_linear(src, &format!("{prefix}.down_proj"), h, i, false, ctx)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [gate, up]: [Tensor; 2] = self
            .gate_up
            .forward(x)?
            .try_into()
            .map_err(|_| ModelError::InvalidInput("gate/up projection must give two outputs".into()))?;
        self.down.forward(&(candle_nn::ops::silu(&gate)? * up)?)
    }
}

/// What every layer of one forward call shares.
pub(crate) struct StepContext<'a> {
    pub(crate) rope: &'a Rope,
    pub(crate) cos: Tensor,
    pub(crate) sin: Tensor,
    pub(crate) mask: Tensor,
}

/// Pre-norm transformer block: `x + attn(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Debug, Clone)]
pub(crate) struct DecoderLayer {
    pub(crate) input_norm: RmsNorm,
    pub(crate) attention: Attention,
    pub(crate) post_attention_norm: RmsNorm,
    pub(crate) mlp: Mlp,
}

impl DecoderLayer {
    pub(crate) fn load(src: &dyn TensorSource, index: usize, c: &ModelConfig, ctx: &LoadContext) -> Result<Self> {
        let p = format!("model.layers.{index}");
        Ok(Self {
            input_norm: RmsNorm::load(src, &format!("{p}.input_layernorm.weight"), c.hidden_size, c.rms_norm_eps, ctx)?,
            attention: Attention::load(src, &format!("{p}.self_attn"), c, ctx)?,
            post_attention_norm: RmsNorm::load(
                src,
                &format!("{p}.post_attention_layernorm.weight"),
                c.hidden_size,
                c.rms_norm_eps,
                ctx,
            )?,
            mlp: Mlp::load(src, &format!("{p}.mlp"), c, ctx)?,
        })
    }

    /// Bytes of this layer's weights.
    pub(crate) fn bytes(&self) -> usize {
        let a = &self.attention;
        a.qkv.bytes() + a.o.bytes() + self.mlp.gate_up.bytes() + self.mlp.down.bytes()
            + self.input_norm.bytes()
            + self.post_attention_norm.bytes()
    }

    pub(crate) fn forward(&self, x: &Tensor, step: &StepContext, cache: &mut KvCache, layer: usize) -> Result<Tensor> {
        let attn = self.attention.forward(&self.input_norm.forward(x)?, step, cache, layer)?;
        let x = (x + attn)?;
        let mlp = self.mlp.forward(&self.post_attention_norm.forward(&x)?)?;
        Ok((x + mlp)?)
    }
}

/// Additive attention mask `(batch, 1, new, cached + new)`: 0 where allowed, `f32::MIN` where not.
///
/// `f32::MIN` (transformers' `finfo.min` too) rather than `-inf` keeps rows with nothing to
/// attend to (queries at padding slots) finite instead of NaN, so NaN cannot leak through
/// `0 * NaN`. The sliding window counts slots, as transformers' `kv_idx > q_idx - window`.
pub(crate) fn attention_mask(
    cache: &KvCache,
    new: usize,
    sliding_window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let batch = cache.batch_size();
    let past = cache.len();
    let total = past + new;
    let mut data = Vec::with_capacity(batch * new * total);
    for row in 0..batch {
        for q in past..total {
            for k in 0..total {
                let in_window = sliding_window.is_none_or(|w| k + w > q);
                let allowed = k <= q && cache.is_real(row, k) && in_window;
                data.push(if allowed { 0.0f32 } else { f32::MIN });
            }
        }
    }
    Ok(Tensor::from_vec(data, (batch, 1, new, total), device)?.contiguous()?)
}

/// `softmax(scores · scale + mask)` in place over f32 scores `(batch, heads, t, total)` with an
/// additive mask `(batch, 1, t, total)` (0 or `f32::MIN`): what the candle ops compute, with
/// masked entries set to 0 instead of exponentiated.
struct MaskedSoftmax {
    scale: f32,
    heads: usize,
    t: usize,
}

impl InplaceOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(scores), CpuStorage::F32(mask)) = (s1, s2) else {
            candle_core::bail!("masked-softmax needs f32 scores and mask")
        };
        let (Some((s0, s_end)), Some((m0, m_end))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("masked-softmax needs contiguous scores and mask")
        };
        let total = *l1.dims().last().unwrap_or(&1);
        let (scores, mask) = (&mut scores[s0..s_end], &mask[m0..m_end]);
        let kernels = crate::kernels::cpu();
        for (r, row) in scores.chunks_exact_mut(total).enumerate() {
            // Row r is (batch, head, query); the mask has one row per (batch, query).
            let (batch, query) = (r / (self.heads * self.t), r % self.t);
            let m = &mask[(batch * self.t + query) * total..][..total];
            let allowed = |v: &f32| *v == 0.0;
            let (Some(lo), Some(hi)) = (m.iter().position(allowed), m.iter().rposition(allowed)) else {
                // Nothing to attend to (a padding query): every score is f32::MIN, and
                // candle's softmax of equal values is uniform.
                row.fill(1.0 / total as f32);
                continue;
            };
            let mut max = f32::NEG_INFINITY;
            for (v, &mv) in row[lo..=hi].iter_mut().zip(&m[lo..=hi]) {
                *v = if mv == 0.0 { *v * self.scale } else { f32::NEG_INFINITY };
                max = max.max(*v);
            }
            let sum = kernels.exp_sub_sum(&mut row[lo..=hi], max);
            for (v, &mv) in row[lo..=hi].iter_mut().zip(&m[lo..=hi]) {
                *v = if mv == 0.0 { *v / sum } else { 0.0 };
            }
            row[..lo].fill(0.0);
            row[hi + 1..].fill(0.0);
        }
        Ok(())
    }
}
