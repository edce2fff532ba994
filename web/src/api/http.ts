// The one way the application talks to the gateway: same-origin fetch with the session
// cookie, the CSRF token on unsafe methods, RFC 9457 problems turned into ApiError, and a
// session that ended (401) reported once to whoever listens (the auth store shows the login).

export interface Problem {
  type?: string
  title?: string
  status: number
  detail?: string
  errors?: { loc?: (string | number)[]; msg: string }[]
  violations?: { code: string; message: string }[]
  retry_after?: number
  change_reason?: string
  [key: string]: unknown
}

export class ApiError extends Error {
  readonly status: number
  readonly problem: Problem

  constructor(problem: Problem) {
    super(problem.detail || problem.title || `HTTP ${problem.status}`)
    this.status = problem.status
    this.problem = problem
  }

  /** The last part of the problem type, e.g. `session-expired`. */
  get kind(): string {
    return (this.problem.type ?? '').split('/').pop() ?? ''
  }
}

export interface Page<T> {
  items: T[]
  total: number
  page: number
  page_size: number
  pages?: number
}

type Query = Record<string, string | number | boolean | null | undefined | string[]>

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
let csrfToken: string | null = null
let onUnauthorized: ((error: ApiError) => void) | null = null

export function setCsrfToken(token: string | null): void {
  csrfToken = token
}

export function setUnauthorizedHandler(handler: ((error: ApiError) => void) | null): void {
  onUnauthorized = handler
}

/** `?a=1&b=x` from a query object; empty values are left out, arrays repeat the key. */
export function queryString(query?: Query): string {
  if (!query) return ''
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue
    if (Array.isArray(value)) value.forEach((v) => params.append(key, v))
    else params.append(key, String(value))
  }
  const text = params.toString()
  return text ? `?${text}` : ''
}

export interface RequestOptions {
  query?: Query
  body?: unknown
  form?: FormData
  background?: boolean
  /** Do not report a 401 to the session handler (the login form handles its own). */
  quiet401?: boolean
  signal?: AbortSignal
}

async function problemOf(response: Response): Promise<Problem> {
  const text = await response.text()
  try {
    const body = JSON.parse(text)
    if (body && typeof body === 'object') return { status: response.status, ...body }
  } catch {
    /* not JSON */
  }
  return { status: response.status, detail: text.slice(0, 300) || response.statusText }
}

export async function request(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  let body: BodyInit | undefined
  if (options.form) body = options.form
  else if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(options.body)
  }
  if (UNSAFE.has(method) && csrfToken) headers['X-CSRF-Token'] = csrfToken
  if (options.background) headers['X-EcoWatt-Activity'] = 'background'
  let response: Response
  try {
    response = await fetch(path + queryString(options.query), {
      method,
      headers,
      body,
      credentials: 'same-origin',
      signal: options.signal,
    })
  } catch (error) {
    if ((error as Error).name === 'AbortError') throw error
    throw new ApiError({ status: 0, type: 'network', detail: (error as Error).message })
  }
  if (!response.ok) {
    const error = new ApiError(await problemOf(response))
    if (response.status === 401 && !options.quiet401 && onUnauthorized) onUnauthorized(error)
    throw error
  }
  return response
}

export async function api<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const response = await request(method, path, options)
  if (response.status === 204) return undefined as T
  const type = response.headers.get('content-type') ?? ''
  return (type.includes('json') ? await response.json() : await response.text()) as T
}

export const get = <T>(path: string, query?: Query, options: RequestOptions = {}) =>
  api<T>('GET', path, { ...options, query })
export const post = <T>(path: string, body?: unknown, options: RequestOptions = {}) =>
  api<T>('POST', path, { ...options, body })
export const put = <T>(path: string, body?: unknown) => api<T>('PUT', path, { body })
export const patch = <T>(path: string, body?: unknown) => api<T>('PATCH', path, { body })
export const del = <T>(path: string, query?: Query) => api<T>('DELETE', path, { query })

/** The file name a download announces (RFC 6266, with the UTF-8 form preferred). */
export function filenameOf(disposition: string | null, fallback: string): string {
  if (!disposition) return fallback
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition)
  if (star) return decodeURIComponent(star[1])
  const plain = /filename="?([^";]+)"?/i.exec(disposition)
  return plain ? plain[1] : fallback
}

/**
 * Download a file (an Excel export) with progress: `onProgress` gets 0–1 when the size is
 * known, else the bytes received so far as a negative number.
 */
export async function download(
  path: string,
  query: Query | undefined,
  fallbackName: string,
  onProgress?: (fraction: number, bytes: number) => void,
): Promise<string> {
  const response = await request('GET', path, { query })
  const total = Number(response.headers.get('content-length') ?? 0)
  const chunks: BlobPart[] = []
  let received = 0
  if (response.body) {
    const reader = response.body.getReader()
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
      received += value.length
      onProgress?.(total ? received / total : -1, received)
    }
  } else {
    chunks.push(await response.blob())
  }
  const name = filenameOf(response.headers.get('content-disposition'), fallbackName)
  const blob = new Blob(chunks, { type: response.headers.get('content-type') ?? 'application/octet-stream' })
  const url = URL.createObjectURL(blob)
  const link = document.createElement('a')
  link.href = url
  link.download = name
  document.body.appendChild(link)
  link.click()
  link.remove()
  setTimeout(() => URL.revokeObjectURL(url), 10_000)
  return name
}
