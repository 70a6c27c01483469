//! Every scenario in examples/scenarios/ runs and shows what it was written to show.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use volact_proto::ErrorCode;
use volact_sim::report::GroupSummary;
use volact_sim::{Options, Report, Scenario, Verify};

fn scenario(name: &str) -> Scenario {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/scenarios")
        .join(format!("{name}.toml"));
    Scenario::from_file(&path).unwrap()
}

async fn run(name: &str) -> Report {
    let options = Options {
        verify: Some(Verify::All),
        ..Options::default()
    };
    volact_sim::run(&scenario(name), &options, &mut |_, _| {})
        .await
        .unwrap()
}

fn group<'a>(r: &'a Report, name: &str) -> &'a GroupSummary {
    r.groups.iter().find(|g| g.name == name).unwrap()
}

fn count(r: &Report, day: usize) -> u32 {
    r.timeline[day].counts["demo-os"]
}

#[tokio::test]
async fn threshold_24_refused_then_the_25th_activates_everyone() {
    let r = run("threshold").await;
    let first = group(&r, "first-24");
    let last = group(&r, "the-25th");
    // Days 0-2: 24 machines counted, all refused, none licensed.
    for day in 0..3 {
        assert_eq!(count(&r, day), 24, "day {day}");
        assert_eq!(r.timeline[day].licensed, 0);
        assert_eq!(r.timeline[day].activated, 0);
    }
    assert!(first.results.refused(ErrorCode::CountInsufficient) >= 24 * 12 * 2);
    // Day 3: the 25th is activated on its first request, the others at their next retry.
    assert_eq!(last.first_activated_day, Some(3));
    assert_eq!(last.results.refused(ErrorCode::CountInsufficient), 0);
    assert_eq!(first.first_activated_day, Some(3));
    assert_eq!(first.activated_machines, 24);
    let all = first.all_activated.as_deref().unwrap();
    let t25 = last.first_activated.as_deref().unwrap();
    let gap = all.parse::<jiff::Timestamp>().unwrap().as_second()
        - t25.parse::<jiff::Timestamp>().unwrap().as_second();
    assert!((0..=2 * 3600).contains(&gap), "{gap}");
    assert_eq!(count(&r, 3), 25);
    assert_eq!(r.timeline[3].licensed, 25);
    assert_eq!(r.timeline.last().unwrap().licensed, 25);
}

#[tokio::test]
async fn machines_that_stop_asking_drop_out_after_30_days() {
    let r = run("dropout").await;
    assert_eq!(count(&r, 19), 30);
    // The leavers last asked on day 14 (renewals every 7 days): they still count on day
    // 43 and are gone by day 45, taking the count below the minimum of 25.
    assert_eq!(count(&r, 43), 30);
    let below = r
        .timeline
        .iter()
        .position(|d| d.counts["demo-os"] < 25)
        .unwrap();
    assert!(
        (44..=45).contains(&below),
        "count fell below 25 on day {below}"
    );
    assert_eq!(count(&r, 69), 22);
    // The stayers' renewals are now answered "not yet", yet they keep their tickets.
    let stayers = group(&r, "stayers");
    assert!(stayers.results.refused(ErrorCode::CountInsufficient) > 0);
    let after: u32 = r.timeline[46..].iter().map(|d| d.activated).sum();
    assert_eq!(after, 0, "no ticket is issued below the minimum");
    assert_eq!(r.timeline.last().unwrap().licensed, 30);
    assert_eq!(r.timeline.last().unwrap().notification, 0);
}

#[tokio::test]
async fn an_outage_longer_than_renewal_loses_nobody() {
    let r = run("outage").await;
    let g = group(&r, "workstations");
    assert!(g.results.refused(ErrorCode::HostUnreachable) > 30 * 7);
    for d in &r.timeline[1..] {
        assert_eq!(d.licensed, 30, "day {}", d.day);
        assert_eq!(d.notification + d.out_of_tolerance_grace, 0);
    }
    for d in &r.timeline[21..40] {
        assert_eq!(d.activated, 0, "day {}", d.day);
        assert!(d.host_down);
    }
    // Back on day 41: every machine renews that day.
    assert_eq!(r.timeline[41].activated, 30);
    assert_eq!(g.notification_machines, 0);
}

#[tokio::test]
async fn a_clock_five_hours_ahead_is_refused_with_clock_skew() {
    let r = run("clock_skew").await;
    let skewed = group(&r, "five-hours-ahead");
    assert_eq!(skewed.activated_machines, 0);
    assert_eq!(skewed.results.activated, 0);
    assert_eq!(
        skewed.results.refused(ErrorCode::ClockSkew),
        skewed.results.requests
    );
    assert!(skewed.results.requests > 5 * 12 * 29);
    // Never counted: the count is the 26 on-time machines.
    assert_eq!(count(&r, 34), 26);
    // 30 days of initial grace, then notification.
    assert_eq!(skewed.notification_machines, 5);
    assert_eq!(skewed.first_notification_day, Some(30));
    let on_time = group(&r, "on-time");
    assert_eq!(on_time.activated_machines, 26);
    assert_eq!(on_time.notification_machines, 0);
}

#[tokio::test]
async fn cloned_images_share_one_client_id_and_count_once() {
    let r = run("cloned").await;
    // Exactly one machine counted every day: not zero (the image did ask), never more.
    for (day, d) in r.timeline.iter().enumerate() {
        assert_eq!(d.counts["demo-os"], 1, "day {day}");
    }
    assert_eq!(r.totals.activated, 0);
    assert_eq!(
        r.totals.refused(ErrorCode::CountInsufficient),
        r.totals.requests
    );
    assert!(r.clone_flags >= 1, "the host flags the shared client id");
}

#[tokio::test]
async fn same_seed_same_bytes_and_http_agrees() {
    let mut s = scenario("threshold");
    s.days = 4;
    s.verify = Verify::None;
    let a = volact_sim::run(&s, &Options::default(), &mut |_, _| {})
        .await
        .unwrap();
    let b = volact_sim::run(&s, &Options::default(), &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(a.json(), b.json());
    assert_eq!(a.csv(), b.csv());
    assert_eq!(volact_sim::chart::svg(&a), volact_sim::chart::svg(&b));
    let other = Options {
        seed: Some(9),
        ..Options::default()
    };
    let c = volact_sim::run(&s, &other, &mut |_, _| {}).await.unwrap();
    assert_ne!(
        a.json(),
        c.json(),
        "another seed spreads the fleet differently"
    );
    let http = Options {
        http: true,
        ..Options::default()
    };
    let h = volact_sim::run(&s, &http, &mut |_, _| {}).await.unwrap();
    assert_eq!(a.csv(), h.csv(), "over HTTP the fleet fares the same");
}
