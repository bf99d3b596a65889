//! Kernel OOM reports: find them in kernel log text, parse them into events, explain them.
