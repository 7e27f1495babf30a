//! Packing against `trl.pack_dataset` (scripts/reference/data_pack.py → tests/data/pack.json).

use chatlm_data::{pack, Example, PackScope, Strategy};
use serde_json::Value;

fn load() -> Value {
    let path = format!("{}/tests/data/pack.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The reference script's LCG (same constants, 64-bit wrapping).
fn lengths(n: usize, max_len: u64, seed: u64) -> Vec<usize> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) % (max_len + 1)) as usize
        })
        .collect()
}

fn runs(ids: &[i64]) -> Vec<[i64; 3]> {
    let mut out: Vec<[i64; 3]> = Vec::new();
    for &v in ids {
        let (row, pos) = (v / 1000, v % 1000);
        match out.last_mut() {
            Some(l) if l[0] == row && l[1] + l[2] == pos => l[2] += 1,
            _ => out.push([row, pos, 1]),
        }
    }
    out
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

#[test]
fn pack_matches_trl_pack_dataset() {
    let data = load();
    let cases = data["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let strategy = Strategy::parse(case["strategy"].as_str().unwrap()).unwrap();
        let seq = case["seq_length"].as_u64().unwrap() as usize;
        if let Some(rows) = case.get("rows") {
            let n = rows["input_ids"].as_array().unwrap().len();
            let examples: Vec<Example> = (0..n)
                .map(|i| {
                    let mut e = Example::default();
                    for (k, col) in rows.as_object().unwrap() {
                        e.insert(k, ints(&col[i]));
                    }
                    e
                })
                .collect();
            let got = pack(&examples, seq, strategy, PackScope::default()).unwrap();
            let want = case["expected"].as_object().unwrap();
            for (k, col) in want {
                let w: Vec<Vec<i64>> = col.as_array().unwrap().iter().map(ints).collect();
                let g: Vec<Vec<i64>> = got.iter().map(|e| e.get(k).unwrap().to_vec()).collect();
                assert_eq!(g, w, "{name}: {k}");
            }
            assert_eq!(got[0].columns.len(), want.len(), "{name}: columns");
            continue;
        }
        let g = &case["generator"];
        let lens = lengths(g["n"].as_u64().unwrap() as usize, g["max_len"].as_u64().unwrap(), g["seed"].as_u64().unwrap());
        let examples: Vec<Example> = lens
            .iter()
            .enumerate()
            .map(|(r, &l)| {
                let ids: Vec<i64> = (0..l as i64).map(|p| r as i64 * 1000 + p).collect();
                let labels = ids.iter().map(|x| -x).collect();
                Example::from_ids(ids).with("labels", labels)
            })
            .collect();
        let got = pack(&examples, seq, strategy, PackScope::Batch(1000)).unwrap();
        let want_runs = case["expected_runs"].as_array().unwrap();
        assert_eq!(got.len(), want_runs.len(), "{name}: rows");
        for (i, (e, w)) in got.iter().zip(want_runs).enumerate() {
            let ids = e.get("input_ids").unwrap();
            let w: Vec<[i64; 3]> =
                w.as_array().unwrap().iter().map(|r| { let r = ints(r); [r[0], r[1], r[2]] }).collect();
            assert_eq!(runs(ids), w, "{name}: row {i}");
            assert!(e.get("labels").unwrap().iter().zip(ids).all(|(l, x)| *l == -x), "{name}: labels follow");
        }
        if let Some(sl) = case.get("expected_seq_lengths") {
            let w: Vec<Vec<i64>> = sl.as_array().unwrap().iter().map(ints).collect();
            let g: Vec<Vec<i64>> = got.iter().map(|e| e.get("seq_lengths").unwrap().to_vec()).collect();
            assert_eq!(g, w, "{name}: seq_lengths");
        } else {
            assert!(got.iter().all(|e| !e.contains("seq_lengths")));
        }
    }
}

#[test]
fn global_scope_keeps_every_token_and_packs_at_least_as_tight() {
    let lens = lengths(5000, 200, 11);
    let examples: Vec<Example> = lens
        .iter()
        .enumerate()
        .map(|(r, &l)| Example::from_ids((0..l as i64).map(|p| r as i64 * 1000 + p).collect()))
        .collect();
    let batch = pack(&examples, 256, Strategy::BfdSplit, PackScope::Batch(1000)).unwrap();
    let global = pack(&examples, 256, Strategy::BfdSplit, PackScope::Global).unwrap();
    assert!(global.len() <= batch.len(), "{} > {}", global.len(), batch.len());
    for packed in [&batch, &global] {
        let mut all: Vec<i64> = packed.iter().flat_map(|e| e.get("input_ids").unwrap().to_vec()).collect();
        all.sort_unstable();
        let mut want: Vec<i64> = examples.iter().flat_map(|e| e.get("input_ids").unwrap().to_vec()).collect();
        want.sort_unstable();
        assert_eq!(all, want);
        for e in packed.iter() {
            let n = e.get("input_ids").unwrap().len();
            assert!(n <= 256);
            assert_eq!(e.get("seq_lengths").unwrap().iter().sum::<i64>(), n as i64);
        }
    }
}

#[test]
fn deterministic_across_thread_counts() {
    let lens = lengths(4321, 100, 5);
    let examples: Vec<Example> = lens.iter().map(|&l| Example::from_ids((0..l as i64).collect())).collect();
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let a = one.install(|| pack(&examples, 128, Strategy::Bfd, PackScope::default()).unwrap());
    let b = pack(&examples, 128, Strategy::Bfd, PackScope::default()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn packing_rejects_mismatched_columns() {
    let rows = vec![Example::from_ids(vec![1, 2, 3]).with("labels", vec![1, 2])];
    let e = pack(&rows, 4, Strategy::Bfd, PackScope::default()).unwrap_err().to_string();
    assert!(e.contains("same length"), "{e}");
    let rows = vec![Example::from_ids(vec![1]).with("seq_lengths", vec![1])];
    assert!(pack(&rows, 4, Strategy::Bfd, PackScope::default()).is_err());
    assert!(pack(&[Example::from_ids(vec![1])], 0, Strategy::Wrapped, PackScope::default()).is_err());
}
