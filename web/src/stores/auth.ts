// The session: who is logged in, the CSRF token, and what happens when the session ends.
import { defineStore } from 'pinia'
import { ApiError, api, setCsrfToken, setUnauthorizedHandler } from '../api/http'
import { homeOf, menuFor, mayOpen, type Role } from '../utils/menu'

export interface Scope {
  kind: 'city' | 'districts' | 'enterprises' | 'om_company'
  districts: string[]
  enterprises: string[]
  om_company: string | null
}

export interface User {
  id: string
  username: string
  display_name: string | null
  kind: string
  role: Role
  role_name: string
  roles: Role[]
  scope: Scope | null
  effective_districts: string[]
  effective_enterprises: string[]
  all_data: boolean
  totp_enabled: boolean
  password_expires_at: string | null
}

export interface SessionBody {
  user: User
  csrf_token: string
  created_at: string
  expires_at: string
  idle_timeout_s: number
}

export type LoginOutcome =
  | { kind: 'ok' }
  | { kind: 'totp' }
  | { kind: 'change-password'; reason: string }

export const useAuth = defineStore('auth', {
  state: () => ({
    user: null as User | null,
    expiresAt: null as string | null,
    idleTimeoutS: 1800,
    restored: false,
    /** Set when a request found the session over: the layout shows the login again. */
    expired: false,
  }),
  getters: {
    loggedIn: (state) => state.user !== null,
    role: (state): Role | null => state.user?.role ?? null,
    menu: (state) => menuFor(state.user?.role),
    home: (state) => homeOf(state.user?.role),
    /** The enterprise of an enterprise user (their home page). */
    ownEnterprise: (state): string | null => state.user?.effective_enterprises?.[0] ?? null,
  },
  actions: {
    accept(body: SessionBody) {
      this.user = body.user
      this.expiresAt = body.expires_at
      this.idleTimeoutS = body.idle_timeout_s
      this.expired = false
      setCsrfToken(body.csrf_token)
    },
    clear() {
      this.user = null
      this.expiresAt = null
      setCsrfToken(null)
    },
    /** After a reload: the session the cookie still holds, if any. */
    async restore(): Promise<boolean> {
      try {
        this.accept(await api<SessionBody>('GET', '/api/auth/session', { quiet401: true }))
        return true
      } catch {
        this.clear()
        return false
      } finally {
        this.restored = true
      }
    },
    async login(username: string, password: string, totpCode?: string): Promise<LoginOutcome> {
      try {
        const body = await api<SessionBody>('POST', '/api/auth/session', {
          body: { username, password, ...(totpCode ? { totp_code: totpCode } : {}) },
          quiet401: true,
        })
        this.accept(body)
        return { kind: 'ok' }
      } catch (error) {
        if (error instanceof ApiError) {
          if (error.kind === 'totp-required') return { kind: 'totp' }
          if (error.kind === 'password-change-required')
            return { kind: 'change-password', reason: String(error.problem.change_reason ?? 'initial') }
        }
        throw error
      }
    },
    async changePassword(username: string, password: string, newPassword: string, totpCode?: string) {
      await api('POST', '/api/auth/password', {
        body: { username, password, new_password: newPassword, ...(totpCode ? { totp_code: totpCode } : {}) },
        quiet401: true,
      })
      // Every session of the account ended with the change.
      this.clear()
    },
    async logout() {
      try {
        await api('DELETE', '/api/auth/session', { quiet401: true })
      } finally {
        this.clear()
      }
    },
    sessionEnded() {
      if (this.user) this.expired = true
      this.clear()
    },
    may(routeName: string): boolean {
      return mayOpen(this.user?.role, routeName)
    },
    install() {
      setUnauthorizedHandler(() => this.sessionEnded())
    },
  },
})
