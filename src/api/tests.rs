use super::*;
use crate::source::memory::MemorySource;

fn state() -> Arc<AppState> {
    let fed = Federation::new(
        vec![crate::federation::Backend {
            name: "a".into(),
            external_labels: Default::default(),
            source: Arc::new(MemorySource::default()),
        }],
        Default::default(),
    );
    AppState::new(Arc::new(fed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_sent_to_the_workers_runs_there_and_a_panic_is_an_internal_error() {
    let st = state();
    assert!(st.workers.is_some());
    // Called from a thread outside the pool (as a connection thread
    // is), the work runs on a pool worker.
    let st2 = st.clone();
    let (caller, ran_on) = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let ran_on = rt.block_on(on_workers(&st2, async {
            std::thread::current().name().map(str::to_string)
        }));
        (std::thread::current().id(), ran_on)
    })
    .join()
    .expect("thread");
    assert_ne!(caller, std::thread::current().id());
    assert_eq!(ran_on.expect("answer").as_deref(), Some("tokio-rt-worker"));
    let e = on_workers(&st, async {
        panic!("boom");
    })
    .await
    .expect_err("a panic");
    assert_eq!(e.kind, ErrorType::Internal);
}
