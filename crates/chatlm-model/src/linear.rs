//! Linear maps over dense or block-quantized weights, and in-situ quantization at load.

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor, D};

use std::sync::Arc;

use crate::error::{ModelError, Result};
use crate::kernels::{self, BlockFormat, Isa, MatMulKernels, QMatrix};

/// Block formats weights can be quantized to while loading (`--quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    /// 8-bit blocks of 32 with an f16 scale (llama.cpp `Q8_0`): ~1/4 of f32, near-lossless.
    Q8_0,
    /// 4-bit super-blocks of 256 with 6-bit sub-scales (llama.cpp `Q4_K`): ~1/7 of f32.
    Q4K,
}

impl Quantization {
    fn ggml(self) -> GgmlDType {
        match self {
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4K => GgmlDType::Q4K,
        }
    }
}

impl std::str::FromStr for Quantization {
    type Err = String;

    /// Parses `q8_0` or `q4_k` (case-insensitive), the spellings of llama.cpp.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(Self::Q8_0),
            "q4_k" => Ok(Self::Q4K),
            other => Err(format!("unknown quantization `{other}` (expected q8_0 or q4_k)")),
        }
    }
}

/// A weight matrix `(out, in)`: GGUF blocks multiplied by our kernels, or a candle operand
/// (dense tensors, and block formats this CPU has no kernel of ours for).
#[derive(Debug, Clone)]
pub(crate) enum Weight {
    /// Dense (f32/bf16/f16 compute) or candle-quantized.
    Candle(QMatMul),
    /// Rows of GGUF blocks for [`crate::kernels`].
    Blocks(Arc<QMatrix>),
}

impl Weight {
    /// Our kernels' matrix when this CPU has a kernel for the format, else candle's operand.
    pub(crate) fn from_qtensor(q: QTensor) -> Result<Self> {
        let format = BlockFormat::from_ggml(q.dtype()).filter(|&f| Isa::detect().has_kernel(f));
        match (format, q.shape().dims()) {
            (Some(format), &[rows, cols]) => {
                let data = q.data()?.into_owned();
                drop(q);
                let matrix = QMatrix::new(format, rows, cols, data)
                    .map_err(|e| ModelError::InvalidInput(format!("weight blocks: {e}")))?;
                Ok(Self::Blocks(Arc::new(matrix)))
            }
            _ => Ok(Self::Candle(QMatMul::from_qtensor(q)?)),
        }
    }

    /// Our kernels' matrix, if the weight is one.
    pub(crate) fn block_matrix(&self) -> Option<Arc<QMatrix>> {
        match self {
            Self::Blocks(m) => Some(Arc::clone(m)),
            Self::Candle(_) => None,
        }
    }

    /// Bytes the weight occupies.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Self::Candle(QMatMul::QTensor(q)) => q.storage_size_in_bytes(),
            Self::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.elem_count() * t.dtype().size_in_bytes(),
            Self::Blocks(m) => m.data().len(),
        }
    }

    /// Rows `ids` as f32, shape `(ids.len(), in)`: an embedding lookup.
    pub(crate) fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(w) => Ok(w.embedding(ids)?),
            Self::Blocks(m) => {
                let ids = ids.flatten_all()?.to_vec1::<u32>()?;
                let cols = m.cols();
                let mut out = vec![0.0f32; ids.len() * cols];
                for (row, &id) in out.chunks_exact_mut(cols).zip(&ids) {
                    m.dequantize_row_into(id as usize, row);
                }
                Ok(Tensor::from_vec(out, (ids.len(), cols), &candle_core::Device::Cpu)?)
            }
        }
    }
}

/// Quantizes an f32 `(out, in)` matrix to `target`, or keeps it dense in `dtype` when `target`
/// is `None`.
///
/// A row length that is not a multiple of the target's block falls back to Q8_0 (blocks of
/// 32), and to dense when even that does not fit: llama.cpp's converter does the same.
pub(crate) fn quantize_matrix(weight: Tensor, target: Option<Quantization>, dtype: DType) -> Result<Weight> {
    let Some(target) = target else {
        return Ok(Weight::Candle(QMatMul::Tensor(weight.to_dtype(dtype)?)));
    };
    let row = weight.dim(D::Minus1)?;
    let block_format = [target.ggml(), GgmlDType::Q8_0]
        .into_iter()
        .find(|d| row % d.block_size() == 0);
    match block_format {
        Some(format) => Weight::from_qtensor(QTensor::quantize(&weight, format)?),
        None => Ok(Weight::Candle(QMatMul::Tensor(weight.to_dtype(dtype)?))),
    }
}

/// `y = x Wᵀ + b` with `W` of shape `(out, in)`, dense or quantized.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
}

impl Linear {
    pub(crate) fn new(weight: Weight, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// Applies the map to `x` of shape `(..., in)`; the result has `x`'s dtype.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            // Block-quantized products take and give f32 activations.
            Weight::Candle(w @ QMatMul::QTensor(_)) if x.dtype() != DType::F32 => {
                w.forward(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype())?
            }
            Weight::Candle(w) => w.forward(x)?,
            Weight::Blocks(m) => {
                let mut dims = x.dims().to_vec();
                let cols = dims.pop().unwrap_or(0);
                if cols != m.cols() {
                    return Err(ModelError::InvalidInput(format!(
                        "input of width {cols} for a matrix of {} columns",
                        m.cols()
                    )));
                }
                let rows = dims.iter().product::<usize>();
                let input = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let mut out = vec![0.0f32; rows * m.rows()];
                kernels::cpu().matmul(m, &input, rows, &mut out);
                dims.push(m.rows());
                Tensor::from_vec(out, dims, x.device())?.to_dtype(x.dtype())?
            }
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// The map as one of our matrices, when it is one and has no bias (what the native
    /// decode step multiplies with).
    pub(crate) fn block_matrix(&self) -> Option<Arc<QMatrix>> {
        self.bias.is_none().then(|| self.weight.block_matrix()).flatten()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.weight.bytes() + self.bias.as_ref().map_or(0, |b| b.elem_count() * b.dtype().size_in_bytes())
    }
}

/// Stacks the rows of `parts` into one map, or `None` when their formats differ.
fn fuse_rows(parts: &[Linear]) -> Result<Option<Linear>> {
    let biases: Option<Vec<&Tensor>> = parts.iter().map(|p| p.bias.as_ref()).collect();
    if biases.is_none() && parts.iter().any(|p| p.bias.is_some()) {
        return Ok(None);
    }
    let weight = if let Some(dense) = parts
        .iter()
        .map(|p| match &p.weight {
            Weight::Candle(QMatMul::Tensor(t)) => Some(t),
            _ => None,
        })
        .collect::<Option<Vec<&Tensor>>>()
    {
        if dense.windows(2).any(|w| w[0].dtype() != w[1].dtype()) {
            return Ok(None);
        }
        Weight::Candle(QMatMul::Tensor(Tensor::cat(&dense, 0)?))
    } else if let Some(blocks) = parts
        .iter()
        .map(|p| match &p.weight {
            Weight::Blocks(m) => Some(m),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
    {
        let Some(first) = blocks.first() else { return Ok(None) };
        if blocks.iter().any(|b| b.format() != first.format() || b.cols() != first.cols()) {
            return Ok(None);
        }
        // Rows are independent runs of blocks: stacking rows is concatenating bytes.
        let bytes = blocks.iter().map(|b| b.data()).collect::<Vec<_>>().concat();
        let rows = blocks.iter().map(|b| b.rows()).sum();
        let fused = QMatrix::new(first.format(), rows, first.cols(), bytes)
            .map_err(|e| ModelError::InvalidInput(format!("fusing weight blocks: {e}")))?;
        Weight::Blocks(Arc::new(fused))
    } else if let Some(blocks) = parts
        .iter()
        .map(|p| match &p.weight {
            Weight::Candle(QMatMul::QTensor(q)) => Some(q),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
    {
        let Some(first) = blocks.first() else { return Ok(None) };
        let cols = first.shape().dims().get(1).copied();
        if blocks.iter().any(|b| b.dtype() != first.dtype() || b.shape().dims().get(1).copied() != cols) {
            return Ok(None);
        }
        // GGML rows are independent runs of blocks: stacking rows is concatenating bytes.
        let mut bytes = Vec::new();
        let mut rows = 0;
        for b in &blocks {
            bytes.extend_from_slice(&b.data()?);
            rows += b.shape().dims().first().copied().unwrap_or(0);
        }
        let dims = vec![rows, cols.unwrap_or(0)];
        Weight::Candle(QMatMul::from_qtensor(qtensor_from_ggml(first.dtype(), &bytes, dims, &first.device())?)?)
    } else {
        return Ok(None);
    };
    let bias = match biases {
        Some(b) if !b.is_empty() => Some(Tensor::cat(&b, 0)?),
        _ => None,
    };
    Ok(Some(Linear { weight, bias }))
}

/// Several projections of the same input, stored apart or fused into one matrix (Phi-3's
/// `qkv_proj` / `gate_up_proj`, kept fused so quantized blocks are never re-split).
#[derive(Debug, Clone)]
pub(crate) enum Projections {
    Separate(Vec<Linear>),
    /// One matrix whose output columns are the parts' outputs, in order, of these widths.
    Fused(Linear, Vec<usize>),
}

impl Projections {
    /// Projections of one input, fused into a single matrix when their weights share a
    /// format (one product, one activation quantization, instead of several); `widths` are
    /// the parts' output sizes.
    pub(crate) fn new(parts: Vec<Linear>, widths: Vec<usize>) -> Result<Self> {
        match fuse_rows(&parts)? {
            Some(fused) => Ok(Self::Fused(fused, widths)),
            None => Ok(Self::Separate(parts)),
        }
    }

    /// The outputs of each part, in order.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Self::Separate(parts) => parts.iter().map(|p| p.forward(x)).collect(),
            Self::Fused(linear, widths) => {
                let y = linear.forward(x)?;
                let mut start = 0;
                widths
                    .iter()
                    .map(|&w| {
                        let part = y.narrow(D::Minus1, start, w)?;
                        start += w;
                        Ok(part)
                    })
                    .collect()
            }
        }
    }

    /// The parts' matrices in output order, when every part is a bias-free block matrix.
    pub(crate) fn block_matrices(&self) -> Option<Vec<Arc<QMatrix>>> {
        match self {
            Self::Separate(parts) => parts.iter().map(Linear::block_matrix).collect(),
            Self::Fused(linear, _) => Some(vec![linear.block_matrix()?]),
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        match self {
            Self::Separate(parts) => parts.iter().map(Linear::bytes).sum(),
            Self::Fused(linear, _) => linear.bytes(),
        }
    }
}
