"""The chat page of `litgpt serve` in a real browser (headless Chromium driven by Selenium) against a real server
with a tiny model: the key prompt, streamed tokens, stop, a multi-turn conversation, a failed request, clear."""

import os
import shutil
import time
from pathlib import Path

import pytest
import requests
from generate.tiny import checkpoint, one_thread  # noqa: F401 (an autouse fixture)
from test_serve import running_server

from litgpt.chat_page import PAGE

KEY = "page-secret"


def browser_or_skip():
    from selenium import webdriver  # the test extra installs it: a missing one fails, never skips

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium chromium-driver; .ci/run does it)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,800"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


# Wraps window.fetch: the chat completion's stream reaches the page one server-sent event per 100 ms, and a stop
# (the request's AbortSignal) ends it with the AbortError a real aborted fetch gives.
SLOW_LINK = """
window.fastFetch = window.fetch;
window.fetch = async (url, options) => {
  const response = await window.fastFetch(url, options);
  if (!String(url).includes("/chat/completions") || !response.ok) return response;
  const reader = response.body.getReader(), decoder = new TextDecoder(), encoder = new TextEncoder();
  const pending = [];
  let buffer = "", finished = false;
  const slow = new ReadableStream({ async pull(controller) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    if (options.signal.aborted) { reader.cancel(); controller.error(new DOMException("stopped", "AbortError")); return; }
    while (!pending.length && !finished) {
      const { value, done } = await reader.read();
      if (done) { finished = true; if (buffer) pending.push(buffer); continue; }
      buffer += decoder.decode(value, { stream: true });
      const events = buffer.split("\\n\\n");
      buffer = events.pop();
      pending.push(...events.map((event) => event + "\\n\\n"));
    }
    if (pending.length) controller.enqueue(encoder.encode(pending.shift())); else controller.close();
  } });
  return new Response(slow, { status: response.status, headers: response.headers });
};
"""


def test_page_has_no_outside_assets():
    html = PAGE.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "src=" not in html and "<link" not in html


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    folder = checkpoint(tmp_path_factory, "tiny-random-llama-chat", "llama", chat_template=True)
    with running_server(folder, tmp_path_factory.mktemp("serve"), "--openai_spec", "true", "--api_key", KEY) as url:
        yield url


def test_chat_page_in_a_browser(page_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    assert "text/html" in requests.get(page_server, timeout=10).headers["content-type"]
    browser = browser_or_skip()
    wait = WebDriverWait(browser, 60)
    screenshot = Path(os.environ.get("LITGPT_SCREENSHOT_DIR", tmp_path)) / "chat_page.png"
    try:
        browser.get(page_server)
        el = lambda id: browser.find_element(By.ID, id)  # noqa: E731
        replies = lambda: browser.find_elements(By.CSS_SELECTOR, ".message.assistant")  # noqa: E731
        idle = lambda _: el("send").is_enabled() and not el("stop").is_enabled()  # noqa: E731

        # the server wants a key: the page asks for it
        wait.until(lambda _: el("api-key-box").is_displayed())
        el("api-key").send_keys(KEY + "\t")
        wait.until(lambda _: "tiny-random-llama-chat" in el("title").text)

        def set_field(id, value):
            el(id).clear()
            el(id).send_keys(str(value))

        def say(text):
            el("prompt").send_keys(text)
            el("send").click()

        # The tiny model can finish a reply before the page draws it (or a click lands), and a busy server merges a
        # few steps into one event, so the first two replies reach the page as a slow link would deliver them: one
        # server event per 100 ms (the page's own fetch and abort are untouched).
        browser.execute_script(SLOW_LINK)

        # turn 1: the reply arrives in pieces (counted by an observer on the page, as the tokens land)
        set_field("temperature", 0)
        set_field("max-tokens", 30)
        browser.execute_script(
            "window.updates = 0; new MutationObserver(() => window.updates++)"
            ".observe(document.getElementById('messages'), {subtree: true, characterData: true, childList: true});")
        say("Hello llama")
        wait.until(idle)
        first = replies()[0].text
        assert first and browser.execute_script("return window.updates") > 3, "the reply did not stream"
        assert not el("error").is_displayed()

        # turn 2: a long reply, stopped once it is under way; it stays as far as it got and grows no more
        set_field("max-tokens", 1500)
        say("Tell me more")
        wait.until(lambda _: len(replies()) == 2 and len(replies()[1].text) > 5)
        el("stop").click()
        wait.until(idle)
        browser.execute_script("window.fetch = window.fastFetch")
        stopped = replies()[1]
        assert "stopped" in stopped.get_attribute("class")
        length = len(stopped.text)
        time.sleep(1)
        assert len(stopped.text) == length

        # turn 3: the conversation so far goes with it (the server applies the model's template to all turns)
        set_field("max-tokens", 10)
        say("And then?")
        wait.until(lambda _: idle(_) and len(replies()) == 3 and replies()[2].text)
        roles = browser.execute_script("return conversation.map(m => m.role)")
        assert roles == ["user", "assistant"] * 3
        browser.save_screenshot(str(screenshot))
        print(f"\nchat page screenshot: {screenshot}")

        # a failed request shows the server's message and keeps the prompt for another try
        set_field("max-tokens", 100000)
        say("Too long")
        wait.until(lambda _: el("error").is_displayed())
        assert "The request failed:" in el("error").text and "max" in el("error").text
        assert el("prompt").get_attribute("value") == "Too long" and len(replies()) == 3

        el("clear").click()
        assert browser.find_elements(By.CSS_SELECTOR, ".message") == [] and not el("error").is_displayed()
        assert browser.execute_script("return conversation.length") == 0
    finally:
        browser.quit()
