// The gateway's own login page (until the SPA replaces it): JSON calls to the login API.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const login = $("#login"), change = $("#change"), panel = $("#session");
  let csrf = null, pending = null;

  function show(section) {
    for (const el of [login, change, panel]) el.hidden = el !== section;
  }

  async function call(method, url, body) {
    const headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
    const response = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, data };
  }

  function loggedIn(info) {
    csrf = info.csrf_token;
    const user = info.user;
    const expires = new Date(info.expires_at).toLocaleString("zh-CN");
    panel.querySelector(".who").textContent =
      `${user.display_name || user.username}（${user.role_name || user.role}）— 会话至 ${expires}`;
    show(panel);
  }

  login.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(login);
    const body = { username: form.get("username"), password: form.get("password") };
    if (form.get("totp_code")) body.totp_code = form.get("totp_code");
    const message = login.querySelector(".message");
    message.textContent = "";
    const { status, data } = await call("POST", "/api/auth/session", body);
    if (status === 200) return loggedIn(data);
    const type = (data && data.type || "").split("/").pop();
    if (type === "totp-required") { $("#totp-row").hidden = false; }
    if (type === "password-change-required") {
      pending = body;
      change.querySelector(".why").textContent = data.detail;
      return show(change);
    }
    message.textContent = (data && data.detail) || `登录失败 (${status})`;
  });

  change.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(change);
    const message = change.querySelector(".message");
    if (form.get("new_password") !== form.get("repeat")) {
      message.textContent = "两次输入的新密码不一致";
      return;
    }
    const { status, data } = await call("POST", "/api/auth/password",
      { ...pending, new_password: form.get("new_password") });
    if (status === 204) {
      const again = await call("POST", "/api/auth/session",
        { username: pending.username, password: form.get("new_password"), totp_code: pending.totp_code });
      if (again.status === 200) return loggedIn(again.data);
      show(login);
      return;
    }
    message.textContent = (data && data.detail) || `修改失败 (${status})`;
  });

  $("#logout").addEventListener("click", async () => {
    await call("DELETE", "/api/auth/session");
    csrf = null;
    show(login);
  });

  call("GET", "/api/auth/session").then(({ status, data }) => {
    if (status === 200) loggedIn(data); else show(login);
  });
})();
