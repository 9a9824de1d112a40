"""Unknown pages outside the API are the console's own error page in a browser (issue 17): styled,
titled, with a way back, signed in or not; the machine paths keep answering JSON."""

from __future__ import annotations

from .conftest import sign_in

SHOTS = "/tmp/wpotp-error-shots"  # noqa: S108  (a screenshot to look at; Playwright makes the folder)


def test_an_unknown_page_is_the_consoles_error_page(page, live_server, admin_user):
    answer = page.goto(live_server.url("/console/no-such-page"))
    assert answer.status == 404
    assert page.title().startswith("Page not found")
    assert page.locator("h1").inner_text() == "Page not found"
    assert "There is no page at /console/no-such-page." in page.locator("main").inner_text()
    page.click("text=Back to the console")
    page.wait_for_url("**/console/login**")  # not signed in: back means the login form
    sign_in(page, live_server, admin_user)
    answer = page.goto(live_server.url("/no-such-page"))
    assert answer.status == 404
    assert page.locator(".who-email").count() == 1  # the console's own layout, as the signed-in user sees it
    assert page.locator("#app-switch option").count() >= 1  # with its app switcher filled in
    page.screenshot(path=f"{SHOTS}/not-found.png", full_page=True)
    page.click("text=Back to the console")
    page.wait_for_url("**/console/")


def test_machine_paths_answer_json_to_a_browser_too(page, live_server):
    answer = page.goto(live_server.url("/metrics/no-such-thing"))
    assert answer.status == 404
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "NOT_FOUND"
