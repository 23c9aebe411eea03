"""The clock: its jobs, their triggers, what each calls, and that a failing job never stops it."""

from __future__ import annotations

import logging
import sys
import types
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from click.testing import CliRunner
from sqlmodel import Session, select

from billing_engine.storage.subscriptions import SubscriptionRow
from connector import scheduler as clock_module
from connector.cli import cli
from connector.settings import load_settings
from connector.wiring import build_services
from sfsandbox.server import AdminClient
from tests.support.clock import SteppedScheduler

pytestmark = pytest.mark.timeout(120)

CONNECTED = {"SF_AUTH": "session", "SF_INSTANCE_URL": "https://example.my.salesforce.com",
             "SF_ACCESS_TOKEN": "token"}


def make_services(database_url, **env):
    return build_services(load_settings({"DATABASE_URL": database_url, "LOG_LEVEL": "warning", **env}))


def jobs_of(services):
    scheduler = build = clock_module.build_scheduler(services, BackgroundScheduler)
    assert build is scheduler
    return {job.id: job for job in scheduler.get_jobs()}, scheduler


def test_a_connected_clock_schedules_its_jobs_from_settings(database_url):
    services = make_services(database_url, **CONNECTED, BILLSYNC_TIMEZONE="Europe/Paris",
                             PULL_INTERVAL_SECONDS="120", PUSH_INTERVAL_SECONDS="15", BILL_RUN_AT="01:45",
                             RECONCILE_AT="04:10", COLLECTIONS_AT="00:45", DUNNING_AT="08:30")
    jobs, scheduler = jobs_of(services)
    assert set(jobs) == {"pull", "push", "bill_run", "reconcile", "collections", "dunning", "partitions",
                         "churn_score", "churn_train", "forecast"}
    assert str(scheduler.timezone) == "Europe/Paris"

    pull, push = jobs["pull"].trigger, jobs["push"].trigger
    assert isinstance(pull, IntervalTrigger) and pull.interval == timedelta(seconds=120)
    assert isinstance(push, IntervalTrigger) and push.interval == timedelta(seconds=15)
    assert jobs["partitions"].trigger.interval == timedelta(hours=6)
    for name, (hour, minute) in {"bill_run": ("1", "45"), "reconcile": ("4", "10"),
                                 "collections": ("0", "45"), "dunning": ("8", "30")}.items():
        trigger = jobs[name].trigger
        assert isinstance(trigger, CronTrigger)
        fields = {f.name: str(f) for f in trigger.fields}
        assert (fields["hour"], fields["minute"]) == (hour, minute)
        assert str(trigger.timezone) == "Europe/Paris"
    forecast = {f.name: str(f) for f in jobs["forecast"].trigger.fields}
    assert (forecast["day"], forecast["hour"], forecast["minute"]) == ("1", "4", "30")  # monthly, FORECAST_AT
    for job in jobs.values():
        assert job.max_instances == 1 and job.coalesce is True and job.misfire_grace_time > 0


def test_pull_and_push_run_as_soon_as_the_clock_starts(database_url):
    services = make_services(database_url, **CONNECTED)
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    scheduler = clock_module.build_scheduler(services, BackgroundScheduler, now=start)
    scheduler.start(paused=True)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert jobs["pull"].next_run_time == start
        assert jobs["push"].next_run_time == start
        assert jobs["partitions"].next_run_time == start
        assert jobs["forecast"].next_run_time == start  # a month the clock missed is stored at once
        # The bill run waits for its time of day (02:00 UTC by default).
        assert jobs["bill_run"].next_run_time.astimezone(UTC).time() == time_of_day(2, 0)
    finally:
        scheduler.shutdown(wait=False)


def test_without_salesforce_only_the_bill_run_the_collection_jobs_and_the_partitions_are_scheduled(database_url):
    jobs, _ = jobs_of(make_services(database_url, CHURN_RISK="off"))
    assert set(jobs) == {"bill_run", "collections", "dunning", "partitions", "forecast"}


def test_with_the_forecast_off_it_is_not_stored(database_url):
    jobs, _ = jobs_of(make_services(database_url, FORECAST="off"))
    assert "forecast" not in jobs


def test_churn_risk_is_scored_daily_and_trained_monthly_unless_turned_off(database_url):
    jobs, _ = jobs_of(make_services(database_url, CHURN_SCORE_AT="05:15", BILLSYNC_TIMEZONE="Europe/Paris"))
    assert {"churn_score", "churn_train"} <= set(jobs)
    score = {f.name: str(f) for f in jobs["churn_score"].trigger.fields}
    train = {f.name: str(f) for f in jobs["churn_train"].trigger.fields}
    assert (score["day"], score["hour"], score["minute"]) == ("*", "5", "15")
    assert (train["day"], train["hour"], train["minute"]) == ("1", "5", "15")
    assert str(jobs["churn_train"].trigger.timezone) == "Europe/Paris"
    start = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    assert jobs["churn_train"].trigger.get_next_fire_time(None, start).date() == date(2027, 1, 1)
    off, _ = jobs_of(make_services(database_url, CHURN_RISK="off"))
    assert not {"churn_score", "churn_train"} & set(off)


def test_the_churn_jobs_call_the_functions_the_cli_calls(database_url, monkeypatch):
    import connector.churn_jobs

    calls = []
    monkeypatch.setattr(connector.churn_jobs, "run_churn_scoring", lambda *a, **k: calls.append(("score", a)) or
                        types.SimpleNamespace(scored=3, method="baseline", changed=1, removed=0))
    monkeypatch.setattr(connector.churn_jobs, "run_churn_training", lambda *a, **k: calls.append(("train", a)) or
                        types.SimpleNamespace(message="trained"))
    monkeypatch.setattr(connector.churn_jobs, "churn_model_is_current", lambda *a: False)
    monkeypatch.setattr(clock_module, "_now", lambda: datetime(2027, 1, 1, 4, 30, tzinfo=UTC))
    services = make_services(database_url)
    jobs, _ = jobs_of(services)
    for name in ("churn_train", "churn_score"):
        jobs[name].func(*jobs[name].args)
    day = date(2027, 1, 1)
    # A scoring while this month's model is not trained trains first.
    assert calls == [("train", (services, day)), ("train", (services, day)), ("score", (services, day))]


def _churn_history(database_url):
    from tests.support.churn import write_histories

    services = make_services(database_url, CHURN_MIN_CHURNED="3")
    write_histories(services.engine, 30)
    return services


def _models_and_methods(services):
    from billing_engine.storage.churn import ChurnModelRow, ChurnScoreRow

    with Session(services.engine) as session:
        models = session.exec(select(ChurnModelRow)).all()
        return models, {row.method for row in session.exec(select(ChurnScoreRow))}


def test_on_the_1st_the_days_scores_use_the_model_trained_that_day(database_url, monkeypatch):
    services = _churn_history(database_url)
    monkeypatch.setattr(clock_module, "_now", lambda: datetime(2026, 12, 1, 4, 30, tzinfo=UTC))
    jobs, _ = jobs_of(services)
    for name in ("churn_score", "churn_train"):  # the same minute: the scoring may fire first
        jobs[name].func(*jobs[name].args)
    models, methods = _models_and_methods(services)
    assert [m.trained_through for m in models] == ["2026-11"]  # trained once, before the scoring
    assert methods == {"model"}


def test_a_clock_started_with_this_months_model_missing_trains_it_at_once(database_url, virtual_clock):
    from connector.clock_lock import clock_lock_for
    from connector.scheduler import Clock

    services = _churn_history(database_url)
    virtual_clock.now = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)  # the 1st's training was missed; before 04:30
    clock = Clock(services, clock_lock_for(services.engine), SteppedScheduler)
    try:
        clock.step()
        clock.scheduler.run_due()
        models, methods = _models_and_methods(services)
        assert [m.trained_through for m in models] == ["2026-11"] and methods == set()
        virtual_clock.advance(hours=3, minutes=30)
        clock.scheduler.run_due()  # 04:30: the scoring uses it, and trains nothing more
        models, methods = _models_and_methods(services)
        assert len(models) == 1 and methods == {"model"}
    finally:
        clock.close()

    again = Clock(services, clock_lock_for(services.engine), SteppedScheduler)  # a restart: the model is there
    try:
        again.step()
        assert again.scheduler.get_job("churn_train").next_run_time.date() == date(2027, 1, 1)
    finally:
        again.close()


@pytest.fixture
def recorded(monkeypatch):
    """Replace each use case with a recorder, where the CLI commands find them too."""
    calls: list[tuple[str, tuple, dict]] = []

    def recorder(name, result=None):
        def record(*args, **kwargs):
            calls.append((name, args, kwargs))
            return result
        return record

    import connector.billing_jobs
    import connector.collection_jobs
    import connector.sync.pull
    import connector.sync.reconcile

    try:
        import connector.sync.push as push_module
    except ImportError:  # the push is built in parallel: stand in for its module
        push_module = types.ModuleType("connector.sync.push")
        monkeypatch.setitem(sys.modules, "connector.sync.push", push_module)
    report = types.SimpleNamespace(agrees=True, mismatches=[])
    bill = types.SimpleNamespace(invoices_created=0, invoices_finalized=0, failures={})
    monkeypatch.setattr(connector.sync.pull, "pull_changes", recorder("pull"))
    monkeypatch.setattr(push_module, "push_outbox", recorder("push"), raising=False)
    monkeypatch.setattr(connector.billing_jobs, "run_bill_run", recorder("bill_run", bill))
    monkeypatch.setattr(connector.sync.reconcile, "reconcile_period", recorder("reconcile", report))
    collected = types.SimpleNamespace(lines=lambda: ["collections: nothing to do"])
    monkeypatch.setattr(connector.collection_jobs, "run_collections", recorder("collections", collected))
    monkeypatch.setattr(connector.collection_jobs, "run_dunning", recorder("dunning", collected))
    monkeypatch.setattr(connector.billing_jobs, "prepare_usage_partitions",
                        recorder("partitions", types.SimpleNamespace(created=[], moved=0)))
    monkeypatch.setattr(connector.billing_jobs, "store_month_forecast",
                        recorder("forecast", types.SimpleNamespace(stored=True, made_in="2026-12", rows=24)))
    return calls


def test_each_job_calls_the_use_case_the_cli_calls(database_url, recorded, monkeypatch):
    services = make_services(database_url, **CONNECTED, BILLSYNC_TIMEZONE="Pacific/Auckland")
    # 23:30 UTC on 30 November is already 1 December in Auckland.
    monkeypatch.setattr(clock_module, "_now", lambda: datetime(2026, 11, 30, 23, 30, tzinfo=UTC))
    jobs, _ = jobs_of(services)
    for name in ("pull", "push", "bill_run", "reconcile", "collections", "dunning", "partitions", "forecast"):
        jobs[name].func(*jobs[name].args)
    by_name = {}
    for name, args, kwargs in recorded:
        by_name.setdefault(name, []).append((args, kwargs))
    assert by_name["pull"] == [((services,), {})]
    [(args, kwargs)] = by_name["push"]
    assert args == (services,) and kwargs["batch_size"] > 0 and kwargs["worker_id"].startswith("clock-")
    assert by_name["bill_run"] == [((services, date(2026, 12, 1)), {})]
    assert by_name["reconcile"] == [((services, "2026-11"), {}), ((services, "2026-12"), {})]
    assert by_name["collections"] == by_name["dunning"] == [((services, date(2026, 12, 1)), {})]
    assert by_name["partitions"] == [((services, date(2027, 3, 1)), {})]  # three months after December
    assert by_name["forecast"] == [((services, date(2026, 12, 1)), {})]


def test_a_failing_job_is_logged_and_the_clock_goes_on(database_url, monkeypatch, virtual_clock):
    import connector.sync.pull

    attempts = []

    def broken(services):
        attempts.append(virtual_clock.now)
        raise RuntimeError("Salesforce said no")

    monkeypatch.setattr(connector.sync.pull, "pull_changes", broken)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("billsync.clock")
    logger.addHandler(handler)
    services = make_services(database_url, **CONNECTED, PULL_INTERVAL_SECONDS="10")
    start = virtual_clock.now
    scheduler = clock_module.build_scheduler(services, SteppedScheduler, now=start)
    scheduler.remove_job("push")
    scheduler.start()
    try:
        scheduler.run_due()  # at start: the pull fails
        virtual_clock.advance(seconds=5)
        scheduler.run_due()  # not due yet
        virtual_clock.advance(seconds=5)
        scheduler.run_due()  # 10 s after the failure: it runs again
        assert scheduler.running
        assert scheduler.get_job("pull").next_run_time == start + timedelta(seconds=20)
    finally:
        scheduler.shutdown(wait=False)
        logger.removeHandler(handler)
    assert attempts == [start, start + timedelta(seconds=10)]  # failed at start, ran again 10 s later
    assert len(records) == 2
    assert records[0].getMessage() == "clock job pull failed; it runs again at its next time"
    assert "Salesforce said no" in str(records[0].exc_info[1])


def test_a_started_clock_pulls_the_sandbox_deals_at_once(org, services, virtual_clock):
    AdminClient(org.url, org.admin_token, org.ca_path).reset("small")
    scheduler = clock_module.build_scheduler(services, SteppedScheduler, now=virtual_clock.now)
    scheduler.remove_job("push")
    scheduler.start()
    try:
        scheduler.run_due()  # the clock's first pass, as it starts
    finally:
        scheduler.shutdown(wait=False)
    with Session(services.engine) as session:
        count = len(session.exec(select(SubscriptionRow.id)).all())
    assert count == 12  # the seed's 12 Closed Won deals


def test_clock_list_prints_the_schedule(database_url):
    env = {"DATABASE_URL": database_url, **CONNECTED, "PUSH_INTERVAL_SECONDS": "10", "BILL_RUN_AT": "02:30"}
    result = CliRunner().invoke(cli, ["clock", "--list"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "clock: 10 jobs (time zone UTC)"
    text = "\n".join(lines)
    assert "push       every 10 s" in text and "connector.sync.push.push_outbox" in text
    assert "bill_run   daily at 02:30 UTC" in text and "connector.billing_jobs.run_bill_run" in text
    assert "forecast   monthly on the 1st at 04:30 UTC, and at start" in text
    assert "connector.billing_jobs.store_month_forecast" in text

    result = CliRunner().invoke(cli, ["clock", "--list"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0
    assert "Salesforce is not configured (SF_AUTH=none): pull, push and reconcile are not scheduled" in result.output


def test_a_job_an_admin_must_unblock_is_one_line_without_a_traceback(database_url, monkeypatch):
    import connector.sync.push
    from connector.sync.binding import OrgBindingError

    def refused(services, **_):
        raise OrgBindingError("the org holds Invoice__c records of another billsync installation")

    monkeypatch.setattr(connector.sync.push, "push_outbox", refused)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("billsync.clock")
    logger.addHandler(handler)
    try:
        clock_module.run_job("push", make_services(database_url, **CONNECTED))
    finally:
        logger.removeHandler(handler)
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in records] == [
        ("ERROR", "clock job push cannot run: the org holds Invoice__c records of another billsync installation; "
                  "it tries again at its next time", None)]
