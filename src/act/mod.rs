//! Act: signal a victim race-free through a pidfd, escalate SIGTERM → SIGKILL, release its memory
//! (`process_mrelease`, on the reaper thread: never on the loop).
pub mod escalate;
pub mod harden;
pub mod hog;
pub mod kill;
pub mod pidfd;
pub mod protect;
pub mod reaper;
pub mod scratch;
