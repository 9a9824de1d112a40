"""/v1/docs in a real browser (issue 13): Swagger UI from this server's own files, under the
console's CSP, no console errors, no request to any other host; authorised with a test key, its
"Try it out" sends an OTP and shows the 201. And the console's links to the documents."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.helpers import make_key


def test_swagger_ui_sends_an_otp_with_a_test_key(app, live_server, page):
    key = make_key(app)
    errors, hosts = [], set()
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: hosts.add(urlsplit(req.url).netloc) if req.url.startswith("http") else None)

    page.goto(live_server.url("/v1/docs"))
    page.wait_for_selector("#operations-OTP-api_send_post")
    page.click("button.authorize")
    modal = page.locator(".modal-ux")
    modal.locator("input").first.fill(key.secret)
    modal.locator("button.authorize").first.click()
    modal.locator("button.btn-done").first.click()

    page.click("#operations-OTP-api_send_post .opblock-summary-control")
    block = page.locator("#operations-OTP-api_send_post")
    block.locator("button.try-out__btn").click()
    body = block.locator("textarea.body-param__text")
    assert "+905551112233" in body.input_value()  # the document's example
    body.fill('{"recipient": "+905551112233"}')
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "201"
    assert '"status": "QUEUED"' in block.locator(".live-responses-table .microlight").first.inner_text()

    assert hosts == {urlsplit(live_server.base).netloc}, hosts
    assert errors == [], errors


def test_keys_page_links_the_documents(logged_in_page, live_server):
    page = logged_in_page("viewer")
    page.goto(live_server.url("/console/keys"))
    section = page.locator("#api-docs")
    assert section.locator("a", has_text="Open the API docs").get_attribute("href") == "/v1/docs"
    openapi = section.locator("a", has_text="Download OpenAPI 3.1").get_attribute("href")
    postman = section.locator("a", has_text="Download Postman collection").get_attribute("href")
    assert page.request.get(live_server.url(openapi)).json()["openapi"] == "3.1.0"
    assert page.request.get(live_server.url(postman)).json()["info"]["schema"].endswith("collection.json")
