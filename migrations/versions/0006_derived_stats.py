"""Scale: derived counts per catalogue, movie, term and movie x term (kept by store.stats), the indexes the browse
queries' plans use, and search indexes that serve "contains" queries (pg_trgm on PostgreSQL, FTS5 trigram tables on
SQLite). Existing data is counted once here.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

SCOPES = {'public': "c.visibility = 'public'", 'all': '1 = 1'}


def upgrade() -> None:
    op.create_table('stats_catalog',
                    sa.Column('scope', sa.String(8), primary_key=True),
                    sa.Column('n_movies', sa.Integer(), nullable=False),
                    sa.Column('n_collections', sa.Integer(), nullable=False),
                    sa.Column('n_components', sa.Integer(), nullable=False))
    op.create_table('stats_movies',
                    sa.Column('scope', sa.String(8), primary_key=True),
                    sa.Column('movie_id', sa.Integer(), sa.ForeignKey('movies.id', ondelete='CASCADE'),
                              primary_key=True),
                    sa.Column('n_collections', sa.Integer(), nullable=False),
                    sa.Column('n_components', sa.Integer(), nullable=False),
                    sa.Column('newest', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_stats_movies_newest', 'stats_movies', ['scope', 'newest'])
    op.create_index('ix_stats_movies_components', 'stats_movies', ['scope', 'n_components'])
    op.create_table('stats_terms',
                    sa.Column('scope', sa.String(8), primary_key=True),
                    sa.Column('term_id', sa.Integer(), sa.ForeignKey('terms.id', ondelete='CASCADE'),
                              primary_key=True),
                    sa.Column('n_movies', sa.Integer(), nullable=False),
                    sa.Column('n_collections', sa.Integer(), nullable=False),
                    sa.Column('n_components', sa.Integer(), nullable=False),
                    sa.Column('sum_r', sa.Float(), nullable=False),
                    sa.Column('newest', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_stats_terms_components', 'stats_terms', ['scope', 'n_components'])
    op.create_index('ix_stats_terms_movies', 'stats_terms', ['scope', 'n_movies'])
    op.create_table('stats_movie_terms',
                    sa.Column('scope', sa.String(8), primary_key=True),
                    sa.Column('movie_id', sa.Integer(), sa.ForeignKey('movies.id', ondelete='CASCADE'),
                              primary_key=True),
                    sa.Column('term_id', sa.Integer(), sa.ForeignKey('terms.id', ondelete='CASCADE'),
                              primary_key=True),
                    sa.Column('n_collections', sa.Integer(), nullable=False),
                    sa.Column('n_components', sa.Integer(), nullable=False),
                    sa.Column('sum_r', sa.Float(), nullable=False),
                    sa.Column('newest', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_stats_movie_terms_term', 'stats_movie_terms', ['scope', 'term_id', 'n_components'])
    op.create_index('ix_stats_movie_terms_newest', 'stats_movie_terms', ['scope', 'term_id', 'newest'])

    op.create_index('ix_terms_set_slug', 'terms', ['reference_set_id', 'slug'])
    op.create_index('ix_components_term_r', 'components', ['best_term_id', 'best_r'])
    op.create_index('ix_components_r', 'components', ['best_r'])
    op.create_index('ix_collections_created', 'collections', ['created'])
    op.create_index('ix_collections_movie_visibility', 'collections', ['movie_id', 'visibility'])
    op.create_index('ix_temporal_decodings_label_q', 'temporal_decodings', ['label', 'q'])

    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        op.execute('CREATE INDEX ix_movies_title_trgm ON movies USING gin (lower(title) gin_trgm_ops)')
        op.execute('CREATE INDEX ix_terms_name_trgm ON terms USING gin (lower(name) gin_trgm_ops)')
    elif op.get_bind().dialect.name == 'sqlite':
        for table, column in (('movies', 'title'), ('terms', 'name')):
            fts = f'{table}_fts'
            op.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, content='{table}', content_rowid='id', "
                       "tokenize='trigram')")
            op.execute(f"INSERT INTO {fts}(rowid, {column}) SELECT id, {column} FROM {table}")
            op.execute(f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN "
                       f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column}); END")
            op.execute(f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN "
                       f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column}); END")
            op.execute(f"CREATE TRIGGER {fts}_update AFTER UPDATE OF {column} ON {table} BEGIN "
                       f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.id, old.{column}); "
                       f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column}); END")

    for scope, where in SCOPES.items():
        op.execute(f"""INSERT INTO stats_movies (scope, movie_id, n_collections, n_components, newest)
            SELECT '{scope}', c.movie_id, COUNT(DISTINCT c.id), COUNT(k.id), MAX(c.created)
            FROM collections c LEFT JOIN components k ON k.collection_id = c.id WHERE {where} GROUP BY c.movie_id""")
        op.execute(f"""INSERT INTO stats_movie_terms (scope, movie_id, term_id, n_collections, n_components, sum_r,
                                                      newest)
            SELECT '{scope}', c.movie_id, k.best_term_id, COUNT(DISTINCT c.id), COUNT(k.id),
                   COALESCE(SUM(k.best_r), 0), MAX(c.created)
            FROM components k JOIN collections c ON k.collection_id = c.id
            WHERE {where} AND k.best_term_id IS NOT NULL GROUP BY c.movie_id, k.best_term_id""")
        op.execute(f"""INSERT INTO stats_terms (scope, term_id, n_movies, n_collections, n_components, sum_r, newest)
            SELECT scope, term_id, COUNT(*), SUM(n_collections), SUM(n_components), SUM(sum_r), MAX(newest)
            FROM stats_movie_terms WHERE scope = '{scope}' GROUP BY scope, term_id""")
        op.execute(f"""INSERT INTO stats_catalog (scope, n_movies, n_collections, n_components)
            SELECT '{scope}', COUNT(*), COALESCE(SUM(n_collections), 0), COALESCE(SUM(n_components), 0)
            FROM stats_movies WHERE scope = '{scope}'""")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        op.execute('DROP INDEX IF EXISTS ix_terms_name_trgm')
        op.execute('DROP INDEX IF EXISTS ix_movies_title_trgm')
    elif bind.dialect.name == 'sqlite':
        for table in ('movies', 'terms'):
            for suffix in ('insert', 'delete', 'update'):
                op.execute(f'DROP TRIGGER IF EXISTS {table}_fts_{suffix}')
            op.execute(f'DROP TABLE IF EXISTS {table}_fts')
    for table, index in (('temporal_decodings', 'ix_temporal_decodings_label_q'),
                         ('collections', 'ix_collections_movie_visibility'), ('collections', 'ix_collections_created'),
                         ('components', 'ix_components_r'), ('components', 'ix_components_term_r'),
                         ('terms', 'ix_terms_set_slug')):
        op.drop_index(index, table_name=table)
    for table in ('stats_movie_terms', 'stats_terms', 'stats_movies', 'stats_catalog'):
        op.drop_table(table)
