//! Act: signal a victim race-free through a pidfd, escalate SIGTERM → SIGKILL, release its memory.
pub mod escalate;
pub mod harden;
pub mod hog;
pub mod kill;
pub mod pidfd;
pub mod protect;
pub mod scratch;
