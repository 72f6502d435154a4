//! The source conformance suite: read everything, checkpoint after some pages, restart a new
//! instance from that checkpoint and check it yields exactly the rest.

use bizon_core::{Json, ReadContext, Source};

/// Read all pages from `pagination`; returns (ids per page, pagination after each page).
pub fn read_all(source: &mut dyn Source, from: Json, ctx: &ReadContext) -> (Vec<Vec<String>>, Vec<Json>) {
    let mut pages = Vec::new();
    let mut after = Vec::new();
    let mut p = from;
    for _ in 0..1_000_000 {
        let page = source.get(&p, ctx).expect("source.get");
        pages.push(page.records.iter().map(|r| r.id.to_owned()).collect());
        after.push(page.next.clone());
        if page.is_last() {
            return (pages, after);
        }
        p = page.next;
    }
    panic!("source never reported its last page");
}

/// Read, checkpoint after each page in turn, restart a fresh instance from the checkpoint: the
/// restart yields exactly the remaining records, none twice. `expected` = total records.
pub fn run_suite(make: &dyn Fn() -> Box<dyn Source>, ctx: &ReadContext, expected: usize) {
    let (pages, after) = read_all(make().as_mut(), Json::Null, ctx);
    let all: Vec<String> = pages.concat();
    assert_eq!(all.len(), expected, "records read");
    let distinct: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), expected, "ids must be unique within a read");
    if let Some(total) = make().total_records(ctx).expect("total_records") {
        assert_eq!(total as usize, expected, "total_records must match what is read");
    }
    for k in 0..pages.len() - 1 {
        let (rest, _) = read_all(make().as_mut(), after[k].clone(), ctx);
        let expect: Vec<String> = pages[k + 1..].concat();
        assert_eq!(rest.concat(), expect, "restart from the checkpoint after page {k}");
    }
    // Deterministic: a second full read gives the same ids.
    let (again, _) = read_all(make().as_mut(), Json::Null, ctx);
    assert_eq!(again.concat(), all, "a second read must give the same records");
}
