import { describe, expect, it } from 'vitest'
import { filenameOf, queryString } from '../src/api/http'
import { parseSse } from '../src/api/sse'

describe('query strings', () => {
  it('leaves out empty values and repeats arrays', () => {
    expect(queryString({ a: 1, b: '', c: null, d: undefined, e: false, f: ['x', 'y'] })).toBe('?a=1&e=false&f=x&f=y')
    expect(queryString({})).toBe('')
    expect(queryString({ q: '西安 家具' })).toBe('?q=%E8%A5%BF%E5%AE%89+%E5%AE%B6%E5%85%B7')
  })
})

describe('download names', () => {
  it('prefers the UTF-8 name of Content-Disposition', () => {
    expect(filenameOf("attachment; filename=\"a.xlsx\"; filename*=UTF-8''%E6%8A%A5%E8%AD%A6.xlsx", 'x')).toBe('报警.xlsx')
    expect(filenameOf('attachment; filename="alarms.xlsx"', 'x')).toBe('alarms.xlsx')
    expect(filenameOf(null, 'fallback.xlsx')).toBe('fallback.xlsx')
  })
})

describe('server-sent events', () => {
  it('splits complete messages and keeps the partial rest', () => {
    const { messages, rest } = parseSse('retry: 3000\nevent: hello\ndata: {}\n\n: ping\n\nevent: batch\ndata: [1,\ndata: 2]\n\nevent: ba')
    expect(messages).toEqual([
      { event: 'hello', data: '{}' },
      { event: 'batch', data: '[1,\n2]' },
    ])
    expect(rest).toBe('event: ba')
  })

  it('reads CRLF streams and default message events', () => {
    const { messages } = parseSse('data: x\r\n\r\n')
    expect(messages).toEqual([{ event: 'message', data: 'x' }])
  })
})
