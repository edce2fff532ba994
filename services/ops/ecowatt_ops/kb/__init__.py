"""The maintenance knowledge base (维护知识库): articles with categories and tags, versions
with their authors, Chinese search, links from incidents and requests."""
