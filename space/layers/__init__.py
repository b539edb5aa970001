"""FS layers and their fast paths, independent of any network: the FS/DFS convolutions (fs,
fs3d, nested_fs), their batched filters (fs_gather, fs_bank), the model-wide helpers
(fs_model), fused CPU paths (fused, cpu_kernels), 8-bit WQ (wq), FS accounting (report), and
the conversion of any network's Conv2d (convert). Imports nothing else from space."""
