import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { useAuth } from '../src/stores/auth'
import { get } from '../src/api/http'

const USER = {
  id: 'u1', username: 'li.na', display_name: '李娜', kind: 'user', role: 'district_officer', role_name: '区县分局人员',
  roles: ['district_officer'], scope: { kind: 'districts', districts: ['610112'], enterprises: [], om_company: null },
  effective_districts: ['610112'], effective_enterprises: [], all_data: false, totp_enabled: false, password_expires_at: null,
}
const SESSION = { user: USER, csrf_token: 'csrf-1', created_at: '', expires_at: '2026-12-07T22:00:00Z', idle_timeout_s: 1800 }

function reply(status: number, body: unknown) {
  return new Response(status === 204 ? null : JSON.stringify(body), {
    status,
    headers: { 'content-type': status >= 400 ? 'application/problem+json' : 'application/json' },
  })
}

describe('the session store', () => {
  let fetchMock: ReturnType<typeof vi.fn>
  beforeEach(() => {
    setActivePinia(createPinia())
    fetchMock = vi.fn()
    vi.stubGlobal('fetch', fetchMock)
  })
  afterEach(() => vi.unstubAllGlobals())

  it('logs in, then sends the CSRF token on unsafe requests only', async () => {
    fetchMock.mockResolvedValueOnce(reply(200, SESSION))
    const auth = useAuth()
    auth.install()
    expect(await auth.login('li.na', 'pw')).toEqual({ kind: 'ok' })
    expect(auth.role).toBe('district_officer')
    expect(auth.menu.map((m) => m.name)).toContain('alarms')

    fetchMock.mockResolvedValueOnce(reply(200, { items: [] }))
    await get('/api/alarm/alarms')
    expect(fetchMock.mock.calls[1][1].headers['X-CSRF-Token']).toBeUndefined()

    fetchMock.mockResolvedValueOnce(reply(204, null))
    await auth.logout()
    const [url, init] = fetchMock.mock.calls[2]
    expect(url).toBe('/api/auth/session')
    expect(init.method).toBe('DELETE')
    expect(init.headers['X-CSRF-Token']).toBe('csrf-1')
    expect(auth.loggedIn).toBe(false)
  })

  it('asks for the second factor and for the forced password change', async () => {
    const auth = useAuth()
    fetchMock.mockResolvedValueOnce(reply(401, { type: 'https://ecowatt.dev/problems/totp-required', status: 401 }))
    expect(await auth.login('li.na', 'pw')).toEqual({ kind: 'totp' })
    fetchMock.mockResolvedValueOnce(
      reply(403, { type: 'https://ecowatt.dev/problems/password-change-required', status: 403, change_reason: 'expired' }),
    )
    expect(await auth.login('li.na', 'pw')).toEqual({ kind: 'change-password', reason: 'expired' })
    expect(auth.loggedIn).toBe(false)
  })

  it('raises wrong credentials as a problem with its kind', async () => {
    const auth = useAuth()
    fetchMock.mockResolvedValueOnce(reply(401, { type: 'https://ecowatt.dev/problems/invalid-credentials', status: 401, detail: 'no' }))
    await expect(auth.login('li.na', 'bad')).rejects.toMatchObject({ status: 401, kind: 'invalid-credentials' })
  })

  it('notices a session that ended on any request and says so once', async () => {
    const auth = useAuth()
    auth.install()
    fetchMock.mockResolvedValueOnce(reply(200, SESSION))
    await auth.login('li.na', 'pw')
    fetchMock.mockResolvedValueOnce(reply(401, { type: 'https://ecowatt.dev/problems/session-expired', status: 401 }))
    await expect(get('/api/alarm/alarms')).rejects.toMatchObject({ status: 401 })
    expect(auth.expired).toBe(true)
    expect(auth.loggedIn).toBe(false)
  })

  it('restores the session after a reload, or finds none without complaining', async () => {
    const auth = useAuth()
    auth.install()
    fetchMock.mockResolvedValueOnce(reply(401, { type: 'https://ecowatt.dev/problems/unauthorized', status: 401 }))
    expect(await auth.restore()).toBe(false)
    expect(auth.expired).toBe(false)
    fetchMock.mockResolvedValueOnce(reply(200, SESSION))
    expect(await auth.restore()).toBe(true)
    expect(auth.user?.username).toBe('li.na')
  })

  it('ends the local session after a password change (the server ends them all)', async () => {
    const auth = useAuth()
    fetchMock.mockResolvedValueOnce(reply(200, SESSION))
    await auth.login('li.na', 'pw')
    fetchMock.mockResolvedValueOnce(reply(204, null))
    await auth.changePassword('li.na', 'pw', 'New-Passw0rd!x')
    expect(JSON.parse(fetchMock.mock.calls[1][1].body)).toEqual({ username: 'li.na', password: 'pw', new_password: 'New-Passw0rd!x' })
    expect(auth.loggedIn).toBe(false)
  })
})
