//! The message of the last failure on this thread, as C libraries keep `errno`.

use std::cell::RefCell;
use volact_proto::ApiError;

thread_local! {
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Records `e` as this thread's last failure.
pub(crate) fn set(e: &ApiError) {
    let text = format!("{}: {}", e.code.as_str(), e.message);
    LAST.with(|l| *l.borrow_mut() = Some(text));
}

/// Records a failure of the ABI itself (a NULL or non-UTF-8 argument).
pub(crate) fn set_text(text: String) {
    LAST.with(|l| *l.borrow_mut() = Some(text));
}

/// Clears the last failure (at the start of each call, so it is never stale).
pub(crate) fn clear() {
    LAST.with(|l| *l.borrow_mut() = None);
}

/// This thread's last failure, if any.
pub(crate) fn get() -> Option<String> {
    LAST.with(|l| l.borrow().clone())
}
