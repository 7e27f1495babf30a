//! The key/value cache: preallocated per sequence, filled in place.

use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Storage, Tensor};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};

/// Keys and values of every layer for a batch of sequences, plus which slots hold real
/// (non-padding) tokens.
///
/// The buffers are allocated once for `capacity` tokens; each forward call writes its new keys
/// and values into the next free slots, so decoding never concatenates or reallocates.
///
/// ```no_run
/// # fn demo(model: &chatlm_model::Model) -> chatlm_model::Result<()> {
/// let mut cache = model.new_cache(1, 512)?;
/// let logits = model.forward(&[1, 2, 3], &mut cache)?;
/// assert_eq!(cache.len(), 3);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct KvCache {
    /// Per layer: keys and values of shape `(batch, kv_heads, capacity, head_dim)`.
    layers: Vec<(Tensor, Tensor)>,
    batch: usize,
    capacity: usize,
    len: usize,
    /// `real[row][slot]`: whether that slot holds a real token (left padding does not).
    real: Vec<Vec<bool>>,
    /// Real tokens seen so far per row: the position id of the row's next real token.
    real_count: Vec<u32>,
}

impl KvCache {
    /// Allocates a cache for `batch` sequences of up to `capacity` tokens each (padding
    /// included), holding keys and values in `dtype` (the model's compute dtype).
    pub fn new(config: &ModelConfig, batch: usize, capacity: usize, dtype: DType, device: &Device) -> Result<Self> {
        if batch == 0 || capacity == 0 {
            return Err(ModelError::InvalidInput(format!(
                "a KV cache needs batch >= 1 and capacity >= 1 (got batch {batch}, capacity {capacity})"
            )));
        }
        let shape = (batch, config.num_key_value_heads, capacity, config.head_dim);
        let layers = (0..config.num_hidden_layers)
            .map(|_| Ok((Tensor::zeros(shape, dtype, device)?, Tensor::zeros(shape, dtype, device)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            batch,
            capacity,
            len: 0,
            real: vec![Vec::with_capacity(capacity); batch],
            real_count: vec![0; batch],
        })
    }

    /// Slots filled so far (the same for every row; padding counts).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Dtype of the stored keys and values.
    pub(crate) fn dtype(&self) -> DType {
        self.layers.first().map_or(DType::F32, |(k, _)| k.dtype())
    }

    /// Number of sequences.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Maximum number of slots.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every token, keeping the buffers.
    pub fn clear(&mut self) {
        self.len = 0;
        self.real.iter_mut().for_each(Vec::clear);
        self.real_count.iter_mut().for_each(|c| *c = 0);
    }

    /// Drops the slots from `len` on (e.g. to re-run a turn); keeps the buffers.
    /// Also discards the bookkeeping of a step that failed half-way.
    pub fn truncate(&mut self, len: usize) {
        if len > self.len {
            return;
        }
        self.len = len;
        for (row, count) in self.real.iter_mut().zip(self.real_count.iter_mut()) {
            row.truncate(len);
            *count = row.iter().filter(|r| **r).count() as u32;
        }
    }

    /// Records the mask of `new` slots and returns their position ids, the way transformers'
    /// `generate` derives them from the attention mask (`cumsum - 1`, padding at 1).
    pub(crate) fn begin_step(&mut self, mask: &[Vec<bool>]) -> Result<Vec<Vec<u32>>> {
        let new = mask.first().map_or(0, Vec::len);
        if mask.len() != self.batch {
            return Err(ModelError::InvalidInput(format!(
                "batch of {} rows for a cache of {} rows",
                mask.len(),
                self.batch
            )));
        }
        if self.len + new > self.capacity {
            return Err(ModelError::ContextOverflow {
                needed: self.len + new,
                capacity: self.capacity,
            });
        }
        let mut positions = Vec::with_capacity(self.batch);
        for (row, row_mask) in mask.iter().enumerate() {
            let mut row_positions = Vec::with_capacity(new);
            for &is_real in row_mask {
                if is_real {
                    row_positions.push(self.real_count[row]);
                    self.real_count[row] += 1;
                } else {
                    row_positions.push(1);
                }
                self.real[row].push(is_real);
            }
            positions.push(row_positions);
        }
        Ok(positions)
    }

    /// Marks the slots recorded by [`Self::begin_step`] as filled.
    pub(crate) fn end_step(&mut self, new: usize) {
        self.len += new;
    }

    /// Writes this step's keys/values of `layer` at the free slots and returns all filled ones.
    pub(crate) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (ks, vs) = self
            .layers
            .get(layer)
            .ok_or_else(|| ModelError::InvalidInput(format!("cache has no layer {layer}")))?;
        let new = k.dim(2)?;
        ks.slice_set(&k.contiguous()?, 2, self.len)?;
        vs.slice_set(&v.contiguous()?, 2, self.len)?;
        let total = self.len + new;
        Ok((ks.narrow(2, 0, total)?, vs.narrow(2, 0, total)?))
    }

    /// Writes one token's keys and values (`kv_heads × head_dim` each, f32) of `layer` at
    /// `slot` of row 0, in place: the native decode step's counterpart of [`Self::append`].
    pub(crate) fn write_slot_f32(&self, layer: usize, slot: usize, k: &[f32], v: &[f32]) -> Result<()> {
        let (ks, vs) = self.layer(layer)?;
        ks.inplace_op1(&WriteSlot { data: k, stride: k.len(), rows: 1, slot })?;
        vs.inplace_op1(&WriteSlot { data: v, stride: v.len(), rows: 1, slot })?;
        Ok(())
    }

    /// Writes `rows` tokens' keys and values of `layer` at slots `slot..slot + rows` of row 0:
    /// token `r`'s keys are `src[r·stride + k_at..][..kv_heads·head_dim]`, its values at
    /// `v_at` (the native prefill's q/k/v rows, written without splitting them first).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_slots_f32(&self, layer: usize, slot: usize, rows: usize, src: &[f32], stride: usize, k_at: usize, v_at: usize) -> Result<()> {
        let (ks, vs) = self.layer(layer)?;
        ks.inplace_op1(&WriteSlot { data: &src[k_at..], stride, rows, slot })?;
        vs.inplace_op1(&WriteSlot { data: &src[v_at..], stride, rows, slot })?;
        Ok(())
    }

    /// Runs `f` on the f32 keys and values of `layer`, row 0, each laid out
    /// `(kv_heads, capacity, head_dim)`.
    pub(crate) fn with_layer_f32<R>(&self, layer: usize, f: impl FnOnce(&[f32], &[f32]) -> R) -> Result<R> {
        Self::with_layers_f32(&[self], layer, |kv| f(kv[0].0, kv[0].1))
    }

    /// Runs `f` on the f32 keys and values of `layer`, row 0, of every cache of `caches` at
    /// once (`kv[i]` of `caches[i]`): the attention of several sequences in one parallel loop
    /// needs all their storages readable together.
    pub(crate) fn with_layers_f32<R>(caches: &[&KvCache], layer: usize, f: impl FnOnce(&[(&[f32], &[f32])]) -> R) -> Result<R> {
        let mut guards = Vec::with_capacity(caches.len());
        for cache in caches {
            let (ks, vs) = cache.layer(layer)?;
            let ((k_storage, k_layout), (v_storage, v_layout)) = (ks.storage_and_layout(), vs.storage_and_layout());
            let per_row = ks.elem_count() / cache.batch;
            guards.push((k_storage, v_storage, k_layout.start_offset(), v_layout.start_offset(), per_row));
        }
        let mut kv = Vec::with_capacity(guards.len());
        for (k_storage, v_storage, k0, v0, per_row) in &guards {
            match (&**k_storage, &**v_storage) {
                (Storage::Cpu(CpuStorage::F32(k)), Storage::Cpu(CpuStorage::F32(v))) => {
                    kv.push((&k[*k0..k0 + per_row], &v[*v0..v0 + per_row]));
                }
                _ => return Err(ModelError::InvalidInput("the native decode step needs an f32 CPU cache".into())),
            }
        }
        Ok(f(&kv))
    }

    fn layer(&self, layer: usize) -> Result<&(Tensor, Tensor)> {
        self.layers
            .get(layer)
            .ok_or_else(|| ModelError::InvalidInput(format!("cache has no layer {layer}")))
    }

    /// Whether slot `slot` of `row` holds a real token.
    pub(crate) fn is_real(&self, row: usize, slot: usize) -> bool {
        self.real[row][slot]
    }
}

/// Writes `rows` tokens (token `r`: `heads × head_dim` values at `data[r·stride..]`) at
/// slots `slot..slot + rows` of row 0 of a `(batch, heads, capacity, head_dim)` f32 tensor.
struct WriteSlot<'a> {
    data: &'a [f32],
    stride: usize,
    rows: usize,
    slot: usize,
}

impl InplaceOp1 for WriteSlot<'_> {
    fn name(&self) -> &'static str {
        "kv-write-slot"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (_, heads, capacity, dim) = layout.shape().dims4()?;
        let CpuStorage::F32(buf) = storage else {
            candle_core::bail!("kv-write-slot needs f32 storage")
        };
        let needed = (self.rows.max(1) - 1) * self.stride + heads * dim;
        if self.data.len() < needed || self.slot + self.rows > capacity || !layout.is_contiguous() {
            candle_core::bail!("kv-write-slot: {} values for {} slots at {} of {layout:?}", self.data.len(), self.rows, self.slot)
        }
        let base = layout.start_offset();
        for r in 0..self.rows {
            let token = &self.data[r * self.stride..r * self.stride + heads * dim];
            for (h, src) in token.chunks_exact(dim).enumerate() {
                let at = base + (h * capacity + self.slot + r) * dim;
                buf[at..at + dim].copy_from_slice(src);
            }
        }
        Ok(())
    }
}
