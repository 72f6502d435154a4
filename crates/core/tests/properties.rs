//! Property tests of the algebra the engine's resume and broker paths rely on: object cursors
//! (Kafka offsets per topic and partition) merge commutatively, associatively and idempotently
//! and never go back; a page survives the queue wire format and route splitting intact.
//! (They moved here from the end-to-end tests: they exercise bizon-core only.)

use bizon_core::record::{cursor_max, DEAD_LETTER};
use bizon_core::{Page, RecordBatch};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn object_cursors_merge_commutatively_associatively_and_idempotently(
        a in prop::collection::btree_map("[a-c]", 0i64..1000, 0..4),
        b in prop::collection::btree_map("[a-c]", 0i64..1000, 0..4),
        c in prop::collection::btree_map("[a-c]", 0i64..1000, 0..4),
    ) {
        let j = |m: &std::collections::BTreeMap<String, i64>| serde_json::to_value(m).unwrap();
        let max = |x: serde_json::Value, y: serde_json::Value| cursor_max(Some(x), Some(y)).unwrap();
        let sorted = |v: serde_json::Value| serde_json::to_value(serde_json::from_value::<std::collections::BTreeMap<String, i64>>(v).unwrap()).unwrap();
        prop_assert_eq!(sorted(max(j(&a), j(&b))), sorted(max(j(&b), j(&a))));
        prop_assert_eq!(sorted(max(max(j(&a), j(&b)), j(&c))), sorted(max(j(&a), max(j(&b), j(&c)))));
        prop_assert_eq!(sorted(max(j(&a), j(&a))), sorted(j(&a)));
        // every key keeps its largest offset: a merged position never goes back
        let m = max(j(&a), j(&b));
        for (k, v) in a.iter().chain(b.iter()) {
            prop_assert!(m[k].as_i64().unwrap() >= *v);
        }
    }

    #[test]
    fn pages_survive_the_queue_wire_format_and_route_splits(
        records in prop::collection::vec(("[a-z0-9_]{0,12}", any::<i64>(), "[ -~]{0,40}", prop_oneof![Just(0u16), 1u16..5, Just(DEAD_LETTER)]), 0..50),
        iteration in any::<i64>(),
    ) {
        let mut batch = RecordBatch::default();
        for (id, ts, text, route) in &records {
            let json = serde_json::to_vec(text).unwrap();
            batch.push_routed(*route, id, *ts, |o| o.extend_from_slice(&json));
        }
        let page = Page { records: batch, next: serde_json::json!({"offsets": {"t": {"0": iteration}}}), cursor_max: None, extracted_at: iteration };
        let msg = bizon_core::wire::decode(&bizon_core::wire::encode("job", iteration, Some(&page))).unwrap();
        let back = msg.page.unwrap();
        prop_assert_eq!(back.records.len(), records.len());
        for (i, (id, ts, _, route)) in records.iter().enumerate() {
            let r = back.records.get(i);
            prop_assert_eq!((r.id, r.timestamp, back.records.route(i)), (id.as_str(), *ts, *route));
        }
        let split: usize = back.records.split_routes().iter().map(|(_, b)| b.len()).sum();
        prop_assert_eq!(split, records.len(), "route splitting keeps every record");
    }
}
