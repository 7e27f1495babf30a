//! How much memory the process holds: the figure to report after loading a model.

/// Resident set sizes of the current process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMemory {
    /// Memory resident now (`VmRSS`).
    pub resident_bytes: u64,
    /// Highest resident memory so far (`VmHWM`).
    pub peak_resident_bytes: u64,
}

impl ProcessMemory {
    /// Reads `/proc/self/status`; `None` where it does not exist (not Linux).
    ///
    /// ```
    /// if let Some(memory) = chatlm_model::ProcessMemory::current() {
    ///     assert!(memory.peak_resident_bytes >= memory.resident_bytes);
    /// }
    /// ```
    pub fn current() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        };
        Some(Self {
            resident_bytes: field("VmRSS:")?,
            peak_resident_bytes: field("VmHWM:")?,
        })
    }
}
